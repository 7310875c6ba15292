// PODGATE_OIDC_*: defaults, a client secret from a file, and one ConfigError naming the
// variable for each setting that cannot work, including token settings under which the
// session tokens podgate mints after a login could never be checked.
import t from 'tap'
import { mkdtemp, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { loadConfig, type Env } from '../../src/config.ts'
import { refusal } from '../support/config-refusal.ts'

const KEY = { PODGATE_JWT_SECRET: 'a-secret-of-at-least-thirty-two-bytes!' }
const OIDC = { ...KEY, PODGATE_OIDC_ISSUER: 'https://keycloak.example.com/realms/main', PODGATE_OIDC_CLIENT_ID: 'podgate', PODGATE_OIDC_CLIENT_SECRET: 'client-secret' }

void t.test('off unless PODGATE_OIDC_ISSUER is set', (t) => {
  t.equal(loadConfig(KEY).auth.oidc, undefined)
  t.end()
})

void t.test('defaults', (t) => {
  const oidc = loadConfig(OIDC).auth.oidc
  t.equal(oidc?.issuer.href, 'https://keycloak.example.com/realms/main')
  t.equal(oidc?.clientId, 'podgate')
  t.equal(oidc?.clientSecret, 'client-secret')
  t.same(oidc?.scopes, ['openid', 'profile', 'email'])
  t.equal(oidc?.userClaim, 'preferred_username')
  t.equal(oidc?.redirectUrl, undefined, 'derived from each login request')
  t.equal(oidc?.sessionTtlS, 28_800, '8 hours')
  t.end()
})

void t.test('settings', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'podgate-oidc-'))
  t.teardown(() => rm(dir, { recursive: true, force: true }))
  const file = join(dir, 'client-secret')
  await writeFile(file, 'from-a-mounted-secret\n')
  const { PODGATE_OIDC_CLIENT_SECRET: _, ...withoutSecret } = OIDC
  const oidc = loadConfig({
    ...withoutSecret,
    PODGATE_OIDC_CLIENT_SECRET_FILE: file,
    PODGATE_OIDC_SCOPES: 'openid, profile groups',
    PODGATE_OIDC_USER_CLAIM: 'sub',
    PODGATE_OIDC_REDIRECT_URL: 'https://apps.example.com/.podgate/callback',
    PODGATE_OIDC_SESSION_TTL: '15m',
  }).auth.oidc
  t.equal(oidc?.clientSecret, 'from-a-mounted-secret', 'the file\'s trailing newline is no part of it')
  t.same(oidc?.scopes, ['openid', 'profile', 'groups'], 'spaces or commas')
  t.equal(oidc?.userClaim, 'sub')
  t.equal(oidc?.redirectUrl?.href, 'https://apps.example.com/.podgate/callback')
  t.equal(oidc?.sessionTtlS, 900)
  t.equal(loadConfig(withoutSecret).auth.oidc?.clientSecret, undefined, 'no secret: a public client (PKCE)')
})

void t.test('settings that cannot work stop start-up naming the variable', (t) => {
  const { PODGATE_JWT_SECRET: _, ...withoutKey } = OIDC
  const bad: Array<[Env, string, RegExp]> = [
    [{ ...KEY, PODGATE_OIDC_CLIENT_ID: 'podgate' }, 'PODGATE_OIDC_CLIENT_ID', /no effect without PODGATE_OIDC_ISSUER/],
    [{ ...KEY, PODGATE_OIDC_SESSION_TTL: '1h' }, 'PODGATE_OIDC_SESSION_TTL', /no effect without PODGATE_OIDC_ISSUER/],
    [{ ...OIDC, PODGATE_OIDC_ISSUER: 'keycloak' }, 'PODGATE_OIDC_ISSUER', /not a URL/],
    [{ ...OIDC, PODGATE_OIDC_ISSUER: 'ftp://keycloak.example.com' }, 'PODGATE_OIDC_ISSUER', /http\(s\) URL/],
    [{ ...OIDC, PODGATE_OIDC_ISSUER: 'https://user:pw@keycloak.example.com' }, 'PODGATE_OIDC_ISSUER', /user name or password/],
    [{ ...OIDC, PODGATE_OIDC_ISSUER: 'https://keycloak.example.com/?realm=main' }, 'PODGATE_OIDC_ISSUER', /query or a fragment/],
    [{ ...OIDC, PODGATE_OIDC_CLIENT_ID: '' }, 'PODGATE_OIDC_CLIENT_ID', /required with PODGATE_OIDC_ISSUER/],
    [{ ...OIDC, PODGATE_OIDC_CLIENT_ID: 'pod gate' }, 'PODGATE_OIDC_CLIENT_ID', /visible ASCII/],
    [{ ...OIDC, PODGATE_OIDC_CLIENT_SECRET_FILE: '/x' }, 'PODGATE_OIDC_CLIENT_SECRET_FILE', /only one of/],
    [{ ...OIDC, PODGATE_OIDC_CLIENT_SECRET: '', PODGATE_OIDC_CLIENT_SECRET_FILE: '/nonexistent/podgate-secret' }, 'PODGATE_OIDC_CLIENT_SECRET_FILE', /cannot read .*ENOENT/],
    [{ ...OIDC, PODGATE_OIDC_SCOPES: 'profile email' }, 'PODGATE_OIDC_SCOPES', /must include openid/],
    [{ ...OIDC, PODGATE_OIDC_SCOPES: 'openid "quoted"' }, 'PODGATE_OIDC_SCOPES', /not a scope/],
    [{ ...OIDC, PODGATE_OIDC_USER_CLAIM: 'user name' }, 'PODGATE_OIDC_USER_CLAIM', /invalid value/],
    [{ ...OIDC, PODGATE_OIDC_REDIRECT_URL: 'https://apps.example.com/callback' }, 'PODGATE_OIDC_REDIRECT_URL', /the path must be \/\.podgate\/callback/],
    [{ ...OIDC, PODGATE_OIDC_REDIRECT_URL: '/.podgate/callback' }, 'PODGATE_OIDC_REDIRECT_URL', /not a URL/],
    [{ ...OIDC, PODGATE_OIDC_SESSION_TTL: '30s' }, 'PODGATE_OIDC_SESSION_TTL', /1m to 7 days/],
    [{ ...OIDC, PODGATE_OIDC_SESSION_TTL: '200h' }, 'PODGATE_OIDC_SESSION_TTL', /1m to 7 days/],
    [{ ...withoutKey, PODGATE_JWKS_URL: 'https://keycloak.example.com/certs' }, 'PODGATE_OIDC_ISSUER', /needs PODGATE_JWT_SECRET/],
    [withoutKey, 'PODGATE_JWT_SECRET', /no token key configured/],
    [{ ...OIDC, PODGATE_JWT_ALGORITHMS: 'HS512' }, 'PODGATE_JWT_ALGORITHMS', /must allow HS256/],
    [{ ...OIDC, PODGATE_JWT_MAX_AGE: '1h' }, 'PODGATE_OIDC_SESSION_TTL', /longer than PODGATE_JWT_MAX_AGE/],
    [{ ...OIDC, PODGATE_AUTH_URL: 'http://auth.example/validate', PODGATE_AUTH_URL_MODE: 'always' }, 'PODGATE_OIDC_ISSUER', /use fallback mode/],
  ]
  for (const [env, variable, message] of bad) {
    const err = refusal(env)
    t.equal(err?.variable, variable, JSON.stringify(env))
    t.match(err?.message, message)
  }
  t.notOk(refusal({ ...OIDC, PODGATE_JWT_MAX_AGE: '8h' }), 'a session exactly as long as the max age')
  t.notOk(refusal({ ...OIDC, PODGATE_AUTH_URL: 'http://auth.example/validate' }), 'fallback mode checks the session JWT in-process')
  t.end()
})
