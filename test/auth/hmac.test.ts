// The synchronous HS* check never accepts a token jose would refuse, and does accept the
// plain tokens it exists for (so the fast path is really taken).
import { createHmac } from 'node:crypto'
import { jwtVerify, type JWTVerifyOptions } from 'jose'
import t from 'tap'
import { HmacTokenCheck, type HmacClaimOptions } from '../../src/auth/hmac.ts'

const SECRET = new TextEncoder().encode('podgate-hmac-test-secret-0123456789abcdef')
const NOW_MS = 1_800_000_000_000
const NOW = NOW_MS / 1000
const HASH: Record<string, string> = { HS256: 'sha256', HS384: 'sha384', HS512: 'sha512' }

function segment (value: unknown): string {
  return Buffer.from(typeof value === 'string' ? value : JSON.stringify(value)).toString('base64url')
}

/** A compact token built by hand, signed with `alg`'s hash (HS256 for algs that are not HMAC). */
function token (header: Record<string, unknown>, payload: unknown, rawPayload?: Buffer): string {
  const input = `${segment(header)}.${rawPayload === undefined ? segment(payload) : rawPayload.toString('base64url')}`
  const hash = HASH[String(header.alg)] ?? 'sha256'
  return `${input}.${createHmac(hash, SECRET).update(input).digest('base64url')}`
}

const claims = { sub: 'alice', iat: NOW - 10, exp: NOW + 600 }
const OPTIONS: HmacClaimOptions = { algorithms: ['HS256', 'HS384', 'HS512'], issuer: undefined, audience: undefined, clockToleranceS: 30 }
const STRICT: HmacClaimOptions = { ...OPTIONS, issuer: ['https://id.example'], audience: ['podgate', 'other'] }

function joseOptions (options: HmacClaimOptions): JWTVerifyOptions {
  return {
    algorithms: [...options.algorithms],
    issuer: options.issuer === undefined ? undefined : [...options.issuer],
    audience: options.audience === undefined ? undefined : [...options.audience],
    clockTolerance: options.clockToleranceS,
    requiredClaims: ['exp'],
    currentDate: new Date(NOW_MS),
  }
}

async function joseAccepts (jwt: string, options: HmacClaimOptions): Promise<boolean> {
  try {
    await jwtVerify(jwt, SECRET, joseOptions(options))
    return true
  } catch {
    return false
  }
}

function flipLastChar (jwt: string): string {
  const last = jwt.at(-1)
  return jwt.slice(0, -1) + (last === 'A' ? 'B' : 'A')
}

// [name, token, options, taken by the fast path]
const cases: Array<[string, string, HmacClaimOptions, boolean]> = [
  ['HS256 with typ', token({ alg: 'HS256', typ: 'JWT' }, claims), OPTIONS, true],
  ['HS256 without typ', token({ alg: 'HS256' }, claims), OPTIONS, true],
  ['HS384', token({ alg: 'HS384' }, claims), OPTIONS, true],
  ['HS512 with kid', token({ alg: 'HS512', kid: 'k1' }, claims), OPTIONS, true],
  ['issuer and audience (string) accepted', token({ alg: 'HS256' }, { ...claims, iss: 'https://id.example', aud: 'podgate' }), STRICT, true],
  ['audience list with one accepted', token({ alg: 'HS256' }, { ...claims, iss: 'https://id.example', aud: ['x', 'other'] }), STRICT, true],
  ['nbf just inside the tolerance', token({ alg: 'HS256' }, { ...claims, nbf: NOW + 29 }), OPTIONS, true],
  ['exp just inside the tolerance', token({ alg: 'HS256' }, { ...claims, exp: NOW - 29 }), OPTIONS, true],
  ['fractional exp', token({ alg: 'HS256' }, { ...claims, exp: NOW + 0.5 }), OPTIONS, true],

  ['signature tampered', flipLastChar(token({ alg: 'HS256' }, claims)), OPTIONS, false],
  ['payload swapped under the old signature', (() => {
    const [h, , s] = token({ alg: 'HS256' }, claims).split('.')
    return `${h}.${segment({ ...claims, sub: 'mallory' })}.${s}`
  })(), OPTIONS, false],
  ['signed with another secret', (() => {
    const input = `${segment({ alg: 'HS256' })}.${segment(claims)}`
    return `${input}.${createHmac('sha256', 'another-secret-of-sufficient-length!!').update(input).digest('base64url')}`
  })(), OPTIONS, false],
  ['algorithm not in the allowed list', token({ alg: 'HS256' }, claims), { ...OPTIONS, algorithms: ['HS512'] }, false],
  ['alg none', `${segment({ alg: 'none' })}.${segment(claims)}.`, OPTIONS, false],
  ['alg RS256 over an HMAC', token({ alg: 'RS256' }, claims), OPTIONS, false],
  ['alg missing', token({ typ: 'JWT' }, claims), OPTIONS, false],
  ['alg not a string', token({ alg: ['HS256'] }, claims), OPTIONS, false],
  ['crit header', token({ alg: 'HS256', crit: ['exp'], exp: 1 }, claims), OPTIONS, false],
  ['b64 false', token({ alg: 'HS256', b64: false, crit: ['b64'] }, claims), OPTIONS, false],
  ['unusual header member (left to jose)', token({ alg: 'HS256', jku: 'https://evil.example/jwks' }, claims), OPTIONS, false],
  ['__proto__ in the header', token(JSON.parse('{"alg":"HS256","__proto__":{"x":1}}') as Record<string, unknown>, claims), OPTIONS, false],
  ['exp missing', token({ alg: 'HS256' }, { sub: 'alice' }), OPTIONS, false],
  ['exp a string', token({ alg: 'HS256' }, { ...claims, exp: String(NOW + 600) }), OPTIONS, false],
  ['exp null', token({ alg: 'HS256' }, { ...claims, exp: null }), OPTIONS, false],
  ['expired exactly at the tolerance', token({ alg: 'HS256' }, { ...claims, exp: NOW - 30 }), OPTIONS, false],
  ['expired long ago', token({ alg: 'HS256' }, { ...claims, exp: NOW - 3600 }), OPTIONS, false],
  ['nbf beyond the tolerance', token({ alg: 'HS256' }, { ...claims, nbf: NOW + 31 }), OPTIONS, false],
  ['nbf a string', token({ alg: 'HS256' }, { ...claims, nbf: 'soon' }), OPTIONS, false],
  ['iat a string', token({ alg: 'HS256' }, { ...claims, iat: 'now' }), OPTIONS, false],
  ['issuer missing', token({ alg: 'HS256' }, { ...claims, aud: 'podgate' }), STRICT, false],
  ['issuer wrong', token({ alg: 'HS256' }, { ...claims, iss: 'https://evil.example', aud: 'podgate' }), STRICT, false],
  ['issuer as a list', token({ alg: 'HS256' }, { ...claims, iss: ['https://id.example'], aud: 'podgate' }), STRICT, false],
  ['audience missing', token({ alg: 'HS256' }, { ...claims, iss: 'https://id.example' }), STRICT, false],
  ['audience wrong', token({ alg: 'HS256' }, { ...claims, iss: 'https://id.example', aud: 'elsewhere' }), STRICT, false],
  ['audience a number', token({ alg: 'HS256' }, { ...claims, iss: 'https://id.example', aud: 7 }), STRICT, false],
  ['payload an array', token({ alg: 'HS256' }, [claims]), OPTIONS, false],
  ['payload a JSON string', token({ alg: 'HS256' }, JSON.stringify(JSON.stringify(claims))), OPTIONS, false],
  ['payload not JSON', token({ alg: 'HS256' }, undefined, Buffer.from('not json')), OPTIONS, false],
  ['payload invalid UTF-8', token({ alg: 'HS256' }, undefined, Buffer.from([0x7b, 0x22, 0xff, 0x22, 0x3a, 0x31, 0x7d])), OPTIONS, false],
  ['non-canonical signature encoding', (() => {
    // 32 bytes → 43 characters; the last carries 2 unused bits: set one, same bytes.
    const jwt = token({ alg: 'HS256' }, claims)
    const alphabet = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_'
    const last = alphabet.indexOf(jwt.at(-1) as string)
    return jwt.slice(0, -1) + (alphabet[last ^ 1] as string)
  })(), OPTIONS, false],
  ['padding in a segment', token({ alg: 'HS256' }, claims) + '=', OPTIONS, false],
  ['two segments', token({ alg: 'HS256' }, claims).split('.').slice(0, 2).join('.'), OPTIONS, false],
  ['four segments', `${token({ alg: 'HS256' }, claims)}.x`, OPTIONS, false],
  ['empty signature', `${token({ alg: 'HS256' }, claims).split('.').slice(0, 2).join('.')}.`, OPTIONS, false],
  ['empty header', `.${token({ alg: 'HS256' }, claims).split('.').slice(1).join('.')}`, OPTIONS, false],
  ['not a token', 'garbage', OPTIONS, false],
]

void t.test('accepts only what jose accepts, and takes the plain tokens itself', async (t) => {
  for (const [name, jwt, options, taken] of cases) {
    const payload = new HmacTokenCheck(SECRET, options).verify(jwt, NOW_MS)
    const jose = await joseAccepts(jwt, options)
    if (payload !== undefined) t.ok(jose, `${name}: jose accepts what the fast path accepted`)
    t.equal(payload !== undefined, taken, `${name}: ${taken ? 'verified here' : 'left to jose'}`)
    if (taken) {
      t.ok(jose, `${name}: jose agrees`)
      const { payload: expected } = await jwtVerify(jwt, SECRET, joseOptions(options))
      t.same(payload, expected, `${name}: the same claims as jose's`)
    }
  }
})

void t.test('the same token flips to refused when the clock passes exp', (t) => {
  const check = new HmacTokenCheck(SECRET, OPTIONS)
  const jwt = token({ alg: 'HS256' }, claims)
  t.ok(check.verify(jwt, NOW_MS))
  t.ok(check.verify(jwt, (claims.exp + 29) * 1000), 'within the tolerance after exp')
  t.equal(check.verify(jwt, (claims.exp + 30) * 1000), undefined)
  t.end()
})
