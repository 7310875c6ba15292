// Time claims jose lets through and podgate must not: numbers that parse to Infinity, an
// `iat` in the future, tokens older than PODGATE_JWT_MAX_AGE — on the HMAC fast path and on
// jose's path alike — and lifetimes the verified-token cache must hold to.
import t from 'tap'
import { createTokenVerifier } from '../../src/auth/verifier.ts'
import type { TokenVerifier } from '../../src/auth/identity.ts'
import type { KeySource } from '../../src/config.ts'
import { AuthError } from '../../src/errors.ts'
import { authConfig, generateSigningKey, signPayload, testSecret, type SigningInput } from '../support/keys.ts'
import { ManualClock } from '../support/manual-clock.ts'

const NOW = Date.UTC(2030, 0, 1)
const nowS = NOW / 1000

async function refusal (verifier: TokenVerifier, token: string): Promise<AuthError> {
  try {
    const identity = await verifier.verify(token)
    throw new Error(`token was accepted as ${identity.user}, until ${identity.expiresAt}`)
  } catch (err) {
    if (err instanceof AuthError) return err
    throw err
  }
}

/** Signs the payload exactly as written: JSON text such as `1e400` that JSON.stringify cannot produce. */
function sign (key: SigningInput, alg: string, payloadJson: string): Promise<string> {
  return signPayload(key, alg, new TextEncoder().encode(payloadJson))
}

const es256 = await generateSigningKey('ES256')
const keys: Array<[string, KeySource, SigningInput, string]> = [
  ['HS256 (the fast path)', { kind: 'secret', secret: testSecret() }, testSecret(), 'HS256'],
  ['ES256 (jose)', { kind: 'public-key', pem: es256.pem }, es256.privateKey, 'ES256'],
]

for (const [name, key, signingKey, alg] of keys) {
  void t.test(name, async (t) => {
    const clock = new ManualClock(NOW)
    const verifier = createTokenVerifier(authConfig(key), { clock })
    t.teardown(() => verifier.close())
    const capped = createTokenVerifier(authConfig(key, { maxAgeS: 3600 }), { clock })
    t.teardown(() => capped.close())

    const refused: Array<[string, string, AuthError['reason'], RegExp]> = [
      ['exp that parses to Infinity', `{"sub":"alice","exp":1e400}`, 'claim', /"exp" claim is not a finite number/],
      ['iat that parses to Infinity', `{"sub":"alice","exp":${nowS + 600},"iat":1e400}`, 'claim', /"iat" claim is not a finite number/],
      ['nbf that parses to -Infinity', `{"sub":"alice","exp":${nowS + 600},"nbf":-1e400}`, 'claim', /"nbf" claim is not a finite number/],
      ['iat an hour in the future', `{"sub":"alice","exp":${nowS + 7200},"iat":${nowS + 3600}}`, 'not_yet_valid', /"iat" claim is in the future/],
    ]
    for (const [what, payload, reason, message] of refused) {
      const err = await refusal(verifier, await sign(signingKey, alg, payload))
      t.equal(err.reason, reason, `${what}: ${reason}`)
      t.match(err.message, message, `${what}: says why`)
    }

    const skewed = await sign(signingKey, alg, `{"sub":"alice","exp":${nowS + 600},"iat":${nowS + 20}}`)
    t.equal((await verifier.verify(skewed)).user, 'alice', 'iat within the clock tolerance is accepted')
    const fractional = await sign(signingKey, alg, `{"sub":"alice","exp":${nowS + 600.5}}`)
    const identity = await verifier.verify(fractional)
    t.equal(identity.expiresAt, NOW + 600_500, 'a fractional exp is accepted and kept to the millisecond')
    t.same(verifier.cached(fractional), identity, 'and cached')
    const far = await sign(signingKey, alg, `{"sub":"alice","exp":1e300}`)
    t.equal((await verifier.verify(far)).user, 'alice', 'a finite exp however far is accepted (PODGATE_JWT_MAX_AGE caps it)')

    t.equal((await refusal(capped, await sign(signingKey, alg, `{"sub":"alice","exp":${nowS + 600}}`))).reason, 'claim', 'max age: a token without iat is refused')
    const old = await refusal(capped, await sign(signingKey, alg, `{"sub":"alice","exp":${nowS + 86_400},"iat":${nowS - 7200}}`))
    t.equal(old.reason, 'expired', 'max age: a token issued 2 h ago is refused')
    t.match(old.message, /PODGATE_JWT_MAX_AGE/)
    const longLived = await sign(signingKey, alg, `{"sub":"alice","exp":1e300,"iat":${nowS - 600}}`)
    const young = await capped.verify(longLived)
    t.equal(young.expiresAt, NOW + 3000 * 1000, 'max age: a long exp ends at iat + max age')
    t.ok(capped.cached(longLived), 'cached while young')
    await clock.advanceTo(NOW + 3001 * 1000)
    t.equal(capped.cached(longLived), undefined, 'the cache lets it go at iat + max age')
    await clock.advanceTo(NOW + 3100 * 1000)
    t.equal((await refusal(capped, longLived)).reason, 'expired', 'and, past the clock tolerance, refused')
  })
}
