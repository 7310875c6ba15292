// PODGATE_IDENTITY_*: off by default; Ed25519 → EdDSA and P-256 → ES256 with the RFC 7638
// thumbprint as kid; published keys for a rotation; and one ConfigError naming the variable for
// every key file or setting that cannot work, none of them showing the key.
import { inspect } from 'node:util'
import { generateKeyPairSync } from 'node:crypto'
import t from 'tap'
import { calculateJwkThumbprint } from 'jose'
import { loadConfig, type Env } from '../../src/config.ts'
import { identityKeyPem, keyFiles } from '../support/identity.ts'
import { refusal } from '../support/config-refusal.ts'

const BASE = { PODGATE_JWT_SECRET: 'a-secret-of-at-least-thirty-two-bytes!' }

/** The base64 body of a PEM block: what must never appear in an error or a printed config. */
function pemBody (pem: string): string {
  return pem.split('\n').filter((line) => line !== '' && !line.startsWith('-----')).join('')
}

void t.test('off unless PODGATE_IDENTITY_KEY is set; its options alone are refused', (t) => {
  t.equal(loadConfig(BASE).gateway.identity, undefined)
  for (const name of ['PODGATE_IDENTITY_HEADER', 'PODGATE_IDENTITY_TTL', 'PODGATE_IDENTITY_BINDING', 'PODGATE_IDENTITY_PUBLISHED_KEYS']) {
    const err = refusal({ ...BASE, [name]: 'x' })
    t.equal(err?.variable, name)
    t.match(err?.message, 'has no effect without PODGATE_IDENTITY_KEY')
  }
  t.end()
})

void t.test('Ed25519 signs as EdDSA, P-256 as ES256; kid is the RFC 7638 thumbprint; defaults', async (t) => {
  const ed = identityKeyPem('EdDSA')
  const ec = identityKeyPem('ES256')
  const files = keyFiles(t, { 'ed.pem': ed.privatePem, 'ec.pem': ec.privatePem })
  for (const [file, alg, kty, crv] of [[files['ed.pem'], 'EdDSA', 'OKP', 'Ed25519'], [files['ec.pem'], 'ES256', 'EC', 'P-256']] as const) {
    const identity = loadConfig({ ...BASE, PODGATE_IDENTITY_KEY: file }).gateway.identity
    t.equal(identity?.key.alg, alg)
    t.equal(identity?.header, 'x-podgate-identity')
    t.equal(identity?.ttlS, 30)
    t.equal(identity?.binding, 'request')
    const jwk = identity?.key.jwk
    t.match(jwk, { kty, crv, alg, use: 'sig' })
    t.equal(jwk?.kid, await calculateJwkThumbprint({ ...jwk }, 'sha256'), `${alg}: kid as jose computes the thumbprint`)
    t.same(identity?.published, [jwk], 'the JWKS lists the signing key\'s public half')
    t.notOk('d' in (jwk ?? {}), 'no private member')
  }
})

void t.test('the private key shows in no printed, serialised or failing config', (t) => {
  const ed = identityKeyPem('EdDSA')
  const files = keyFiles(t, { 'key.pem': ed.privatePem })
  const config = loadConfig({ ...BASE, PODGATE_IDENTITY_KEY: files['key.pem'] })
  const secret = pemBody(ed.privatePem)
  for (const text of [inspect(config, { depth: Infinity, showHidden: true }), JSON.stringify(config)]) {
    t.notMatch(text, secret)
    t.notMatch(text, /"d":/, 'no JWK private member either')
  }
  const pasted = refusal({ ...BASE, PODGATE_IDENTITY_KEY: ed.privatePem })
  t.equal(pasted?.variable, 'PODGATE_IDENTITY_KEY')
  t.match(pasted?.message, 'the path of a PEM file, not the key itself')
  t.notMatch(pasted?.message, secret.slice(0, 16), 'a key pasted into the variable is not echoed')
  t.end()
})

void t.test('settings', (t) => {
  const files = keyFiles(t, { 'key.pem': identityKeyPem('EdDSA').privatePem })
  const identity = loadConfig({
    ...BASE,
    PODGATE_IDENTITY_KEY: files['key.pem'],
    PODGATE_IDENTITY_HEADER: 'X-Pod-Identity',
    PODGATE_IDENTITY_TTL: '2m',
    PODGATE_IDENTITY_BINDING: 'user',
  }).gateway.identity
  t.equal(identity?.header, 'x-pod-identity', 'lower-cased like the user header')
  t.equal(identity?.ttlS, 120)
  t.equal(identity?.binding, 'user')
  t.end()
})

void t.test('published keys: public halves of private or public PEM files, signing key first, no duplicates', (t) => {
  const current = identityKeyPem('EdDSA')
  const previous = identityKeyPem('ES256')
  const next = identityKeyPem('EdDSA')
  const files = keyFiles(t, { 'current.pem': current.privatePem, 'previous.pem': previous.privatePem, 'next.pub': next.publicPem, 'current.pub': current.publicPem })
  const identity = loadConfig({
    ...BASE,
    PODGATE_IDENTITY_KEY: files['current.pem'],
    PODGATE_IDENTITY_PUBLISHED_KEYS: `${files['previous.pem']}, ${files['next.pub']},${files['current.pub']}`,
  }).gateway.identity
  t.same(identity?.published.map((k) => k.alg), ['EdDSA', 'ES256', 'EdDSA'])
  t.equal(identity?.published[0]?.kid, identity?.key.jwk.kid)
  t.equal(new Set(identity?.published.map((k) => k.kid)).size, 3, 'the signing key listed again is published once')
  for (const key of identity?.published ?? []) t.notOk('d' in key, `${key.kid}: public members only`)
  t.end()
})

void t.test('every key file or setting that cannot work is one ConfigError naming the variable', (t) => {
  const ed = identityKeyPem('EdDSA')
  const rsa = generateKeyPairSync('rsa', { modulusLength: 2048, privateKeyEncoding: { type: 'pkcs8', format: 'pem' }, publicKeyEncoding: { type: 'spki', format: 'pem' } })
  const p384 = generateKeyPairSync('ec', { namedCurve: 'P-384', privateKeyEncoding: { type: 'pkcs8', format: 'pem' }, publicKeyEncoding: { type: 'spki', format: 'pem' } })
  const sec1 = generateKeyPairSync('ec', { namedCurve: 'P-256', privateKeyEncoding: { type: 'sec1', format: 'pem' }, publicKeyEncoding: { type: 'spki', format: 'pem' } })
  const encrypted = generateKeyPairSync('ed25519', {
    privateKeyEncoding: { type: 'pkcs8', format: 'pem', cipher: 'aes-256-cbc', passphrase: 'passphrase' },
    publicKeyEncoding: { type: 'spki', format: 'pem' },
  })
  const files = keyFiles(t, {
    'ed.pem': ed.privatePem,
    'ed.pub': ed.publicPem,
    'rsa.pem': rsa.privateKey,
    'p384.pem': p384.privateKey,
    'sec1.pem': sec1.privateKey,
    'encrypted.pem': encrypted.privateKey,
    'two.pem': ed.privatePem + identityKeyPem('EdDSA').privatePem,
    'garbage.pem': '-----BEGIN PRIVATE KEY-----\nbm90IGEga2V5\n-----END PRIVATE KEY-----\n',
    'empty.pem': '',
  })
  const key = { ...BASE, PODGATE_IDENTITY_KEY: files['ed.pem'] }
  const cases: { name: string, env: Env, variable: string, message: RegExp }[] = [
    { name: 'no such file', env: { ...BASE, PODGATE_IDENTITY_KEY: `${files['ed.pem']}.missing` }, variable: 'PODGATE_IDENTITY_KEY', message: /cannot read .*ENOENT/ },
    { name: 'a public key to sign with', env: { ...BASE, PODGATE_IDENTITY_KEY: files['ed.pub'] }, variable: 'PODGATE_IDENTITY_KEY', message: /"PRIVATE KEY" block .*found "PUBLIC KEY"/ },
    { name: 'RSA', env: { ...BASE, PODGATE_IDENTITY_KEY: files['rsa.pem'] }, variable: 'PODGATE_IDENTITY_KEY', message: /unsupported key type rsa: use Ed25519/ },
    { name: 'P-384', env: { ...BASE, PODGATE_IDENTITY_KEY: files['p384.pem'] }, variable: 'PODGATE_IDENTITY_KEY', message: /unsupported key type ec secp384r1/ },
    { name: 'SEC1 "EC PRIVATE KEY"', env: { ...BASE, PODGATE_IDENTITY_KEY: files['sec1.pem'] }, variable: 'PODGATE_IDENTITY_KEY', message: /found "EC PRIVATE KEY".*/ },
    { name: 'encrypted PKCS#8', env: { ...BASE, PODGATE_IDENTITY_KEY: files['encrypted.pem'] }, variable: 'PODGATE_IDENTITY_KEY', message: /found "ENCRYPTED PRIVATE KEY"/ },
    { name: 'two keys in one file', env: { ...BASE, PODGATE_IDENTITY_KEY: files['two.pem'] }, variable: 'PODGATE_IDENTITY_KEY', message: /one PEM/ },
    { name: 'not a key inside the block', env: { ...BASE, PODGATE_IDENTITY_KEY: files['garbage.pem'] }, variable: 'PODGATE_IDENTITY_KEY', message: /cannot be parsed/ },
    { name: 'an empty file', env: { ...BASE, PODGATE_IDENTITY_KEY: files['empty.pem'] }, variable: 'PODGATE_IDENTITY_KEY', message: /found no PEM block/ },
    { name: 'a published RSA key', env: { ...key, PODGATE_IDENTITY_PUBLISHED_KEYS: files['rsa.pem'] }, variable: 'PODGATE_IDENTITY_PUBLISHED_KEYS', message: /unsupported key type rsa/ },
    { name: 'a published file that is missing', env: { ...key, PODGATE_IDENTITY_PUBLISHED_KEYS: '/nonexistent/old.pem' }, variable: 'PODGATE_IDENTITY_PUBLISHED_KEYS', message: /cannot read "\/nonexistent\/old.pem"/ },
    { name: 'the user header\'s name', env: { ...key, PODGATE_USER_HEADER: 'X-Who', PODGATE_IDENTITY_HEADER: 'x_who' }, variable: 'PODGATE_IDENTITY_HEADER', message: /must differ from PODGATE_USER_HEADER/ },
    { name: 'a header name with a space', env: { ...key, PODGATE_IDENTITY_HEADER: 'X Identity' }, variable: 'PODGATE_IDENTITY_HEADER', message: /invalid value/ },
    { name: 'a TTL under a second', env: { ...key, PODGATE_IDENTITY_TTL: '500ms' }, variable: 'PODGATE_IDENTITY_TTL', message: /whole seconds from 1s to 10m/ },
    { name: 'a TTL in fractions of a second', env: { ...key, PODGATE_IDENTITY_TTL: '1500ms' }, variable: 'PODGATE_IDENTITY_TTL', message: /whole seconds/ },
    { name: 'a TTL over 10 minutes', env: { ...key, PODGATE_IDENTITY_TTL: '1h' }, variable: 'PODGATE_IDENTITY_TTL', message: /whole seconds/ },
    { name: 'an unknown binding', env: { ...key, PODGATE_IDENTITY_BINDING: 'path' }, variable: 'PODGATE_IDENTITY_BINDING', message: /expected one of request, user/ },
  ]
  for (const c of cases) {
    const err = refusal(c.env)
    t.equal(err?.variable, c.variable, c.name)
    t.match(err?.message, c.message, c.name)
    for (const pem of [ed.privatePem, rsa.privateKey, p384.privateKey, sec1.privateKey]) t.notMatch(err?.message, pemBody(pem).slice(0, 24), `${c.name}: no key material in the message`)
  }
  t.end()
})
