// PODGATE_AUTH_URL* and PODGATE_FORWARD_CREDENTIALS in loadConfig: defaults, the JWT key that
// always mode makes optional (and fallback mode does not), and one ConfigError naming the
// variable for each value that cannot work.
import t from 'tap'
import { createCredentialVerifier, isJwtShaped } from '../../src/auth/credential-verifier.ts'
import { createTokenVerifier } from '../../src/auth/verifier.ts'
import { loadConfig, type Env } from '../../src/config.ts'
import { signToken, testSecret } from '../support/keys.ts'
import { refusal } from '../support/config-refusal.ts'

const KEY = { PODGATE_JWT_SECRET: 'a-secret-of-at-least-thirty-two-bytes!' }
const URL_ONLY = { PODGATE_AUTH_URL: 'http://django.accounts.svc:8000/auth/validate' }

void t.test('defaults', (t) => {
  const plain = loadConfig(KEY)
  t.equal(plain.auth.authUrl, undefined, 'no auth service unless asked')
  t.equal(plain.auth.forwardCredentials, false, 'credentials are removed before the pod')
  const { authUrl } = loadConfig({ ...KEY, ...URL_ONLY }).auth
  t.same(authUrl && { ...authUrl, url: authUrl.url.href }, {
    url: 'http://django.accounts.svc:8000/auth/validate',
    mode: 'fallback',
    timeoutMs: 5_000,
    userHeader: 'x-user-id',
    userPrefix: '',
    tenantHeader: undefined,
    ttlMs: 60_000,
    negativeTtlMs: 5_000,
  })
  const custom = loadConfig({
    ...URL_ONLY,
    PODGATE_AUTH_URL_MODE: 'always',
    PODGATE_AUTH_URL_TIMEOUT: '800ms',
    PODGATE_AUTH_URL_USER_HEADER: 'X-Target-Service',
    PODGATE_AUTH_URL_USER_PREFIX: 'user-',
    PODGATE_AUTH_URL_TTL: '5m',
    PODGATE_AUTH_URL_NEGATIVE_TTL: '0',
    PODGATE_TENANT_CLAIM: 'tenant',
    PODGATE_AUTH_URL_TENANT_HEADER: 'X-Tenant',
    PODGATE_FORWARD_CREDENTIALS: 'true',
  }).auth
  t.same([custom.authUrl?.mode, custom.authUrl?.timeoutMs, custom.authUrl?.userHeader, custom.authUrl?.userPrefix, custom.authUrl?.ttlMs, custom.authUrl?.negativeTtlMs, custom.authUrl?.tenantHeader],
    ['always', 800, 'x-target-service', 'user-', 300_000, 0, 'x-tenant'])
  t.equal(custom.forwardCredentials, true)
  t.end()
})

void t.test('always needs no JWT key; without PODGATE_AUTH_URL or in fallback mode one is still required', (t) => {
  const always = loadConfig({ ...URL_ONLY, PODGATE_AUTH_URL_MODE: 'always' })
  t.equal(always.auth.key.kind, 'none')
  t.same(always.auth.algorithms, [])
  t.doesNotThrow(() => { createCredentialVerifier(always).close() }, 'the verifier builds without a key')
  t.throws(() => createTokenVerifier(always.auth), { name: 'ConfigError', variable: 'PODGATE_JWT_SECRET' }, 'the JWT verifier alone refuses to work without one')
  t.equal(loadConfig({ ...KEY, ...URL_ONLY, PODGATE_AUTH_URL_MODE: 'always' }).auth.key.kind, 'secret', 'a key may be set (and is not used)')

  const none = refusal({})
  t.equal(none?.variable, 'PODGATE_JWT_SECRET')
  t.equal(none?.message, 'PODGATE_JWT_SECRET: no token key configured: set PODGATE_JWT_SECRET, PODGATE_JWT_PUBLIC_KEY or PODGATE_JWKS_URL', 'the error without PODGATE_AUTH_URL is unchanged')
  const fallback = refusal(URL_ONLY)
  t.equal(fallback?.variable, 'PODGATE_JWT_SECRET')
  t.match(fallback?.message, /fallback still checks JWT-shaped tokens in-process; set it to always/)
  t.equal(refusal({ ...URL_ONLY, PODGATE_AUTH_URL_MODE: 'always', PODGATE_JWT_ALGORITHMS: 'RS256' })?.variable, 'PODGATE_JWT_ALGORITHMS')
  t.equal(loadConfig({ ...URL_ONLY, PODGATE_AUTH_URL_MODE: 'always' }, { requireKey: false }).auth.key.kind, 'secret', 'commands that never verify keep their unusable random key')
  t.end()
})

void t.test('values that cannot work stop start-up naming the variable', (t) => {
  const bad: Array<[Env, string, RegExp]> = [
    [{ PODGATE_AUTH_URL: 'django/auth' }, 'PODGATE_AUTH_URL', /not a URL/],
    [{ PODGATE_AUTH_URL: 'ftp://django/auth' }, 'PODGATE_AUTH_URL', /http\(s\) URL/],
    [{ PODGATE_AUTH_URL: 'http://user:pw@django/auth' }, 'PODGATE_AUTH_URL', /user name or password/],
    [{ ...URL_ONLY, PODGATE_AUTH_URL_MODE: 'sometimes' }, 'PODGATE_AUTH_URL_MODE', /fallback, always/],
    [{ ...URL_ONLY, PODGATE_AUTH_URL_TIMEOUT: '0' }, 'PODGATE_AUTH_URL_TIMEOUT', /10ms to 60s/],
    [{ ...URL_ONLY, PODGATE_AUTH_URL_TIMEOUT: '5m' }, 'PODGATE_AUTH_URL_TIMEOUT', /10ms to 60s/],
    [{ ...URL_ONLY, PODGATE_AUTH_URL_TTL: 'long' }, 'PODGATE_AUTH_URL_TTL', /expected a duration/],
    [{ ...URL_ONLY, PODGATE_AUTH_URL_TTL: '48h' }, 'PODGATE_AUTH_URL_TTL', /at most 24h/],
    [{ ...URL_ONLY, PODGATE_AUTH_URL_NEGATIVE_TTL: '-1' }, 'PODGATE_AUTH_URL_NEGATIVE_TTL', /expected a duration/],
    [{ ...URL_ONLY, PODGATE_AUTH_URL_USER_HEADER: 'X User' }, 'PODGATE_AUTH_URL_USER_HEADER', /invalid value/],
    [{ ...URL_ONLY, PODGATE_AUTH_URL_USER_PREFIX: 'user- ' }, 'PODGATE_AUTH_URL_USER_PREFIX', /visible ASCII/],
    [{ ...URL_ONLY, PODGATE_TENANT_CLAIM: 'tenant' }, 'PODGATE_AUTH_URL_TENANT_HEADER', /required with PODGATE_TENANT_CLAIM/],
    [{ ...URL_ONLY, PODGATE_AUTH_URL_TENANT_HEADER: 'X-Tenant' }, 'PODGATE_AUTH_URL_TENANT_HEADER', /no effect without PODGATE_TENANT_CLAIM/],
    [{ PODGATE_AUTH_URL_MODE: 'always' }, 'PODGATE_AUTH_URL_MODE', /no effect without PODGATE_AUTH_URL/],
    [{ PODGATE_AUTH_URL_TTL: '1m' }, 'PODGATE_AUTH_URL_TTL', /no effect without PODGATE_AUTH_URL/],
    [{ PODGATE_FORWARD_CREDENTIALS: 'maybe' }, 'PODGATE_FORWARD_CREDENTIALS', /true or false/],
  ]
  for (const [env, variable, problem] of bad) {
    const err = refusal({ ...KEY, ...env })
    t.equal(err?.variable, variable, `${JSON.stringify(env)} → ${variable}`)
    t.match(err?.message, problem, `${JSON.stringify(env)}: says what is wrong`)
  }
  t.end()
})

void t.test('isJwtShaped: three base64url segments whose first is a JSON object', async (t) => {
  const jwt = await signToken(testSecret(), 'HS256', { sub: 'alice' })
  const header = Buffer.from('{"alg":"HS256"}').toString('base64url')
  const cases: Array<[string, boolean]> = [
    [jwt, true],
    [`${header}.e30.`, true],
    ['c2VjcmV0LW9wYXF1ZS10b2tlbg', false],
    ['8f14e45fceea167a5a36dedd4bea2543', false],
    ['a.b.c', false],
    [`${Buffer.from('[1]').toString('base64url')}.e30.sig`, false],
    [`${Buffer.from('"x"').toString('base64url')}.e30.sig`, false],
    [`${header}.e30`, false],
    [`${header}..sig`, false],
    [`.${header}.e30.sig`, false],
    [`${header}.e30.sig.more`, false],
    [`${header}.e3+0.sig`, false],
    ['', false],
  ]
  for (const [token, shaped] of cases) t.equal(isJwtShaped(token), shaped, token.slice(0, 40))
})
