// CPU cost of the identity header on one core: the raw signature per algorithm, one token per
// binding, and the whole upstreamHeaders() call with the header off and on — the numbers behind
// docs/adr/0009-identity-token.md. Also what a pod pays to verify one with jose.
// Run: node bench/identity-sign.ts (a few seconds; nothing else should be running).
import { generateKeyPairSync } from 'node:crypto'
import type { IncomingMessage } from 'node:http'
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { createLocalJWKSet, jwtVerify, type JSONWebKeySet } from 'jose'
import { createIdentitySigner } from '../src/auth/identity-token.ts'
import { loadConfig } from '../src/config.ts'
import { upstreamHeaders, type ForwardingOptions } from '../src/gateway/headers.ts'
import { summarize, type Summary } from './stats.ts'

const ROUNDS = 7

/** Mean µs per call of `fn` in each of ROUNDS rounds, after a warm-up. */
function perCall (fn: () => unknown, calls: number): Summary {
  for (let i = 0; i < Math.min(calls, 2000); i++) fn()
  const rounds: number[] = []
  for (let r = 0; r < ROUNDS; r++) {
    const start = process.hrtime.bigint()
    for (let i = 0; i < calls; i++) fn()
    rounds.push(Number(process.hrtime.bigint() - start) / 1000 / calls)
  }
  return summarize(rounds)
}

async function perCallAsync (fn: () => Promise<unknown>, calls: number): Promise<Summary> {
  for (let i = 0; i < 500; i++) await fn()
  const rounds: number[] = []
  for (let r = 0; r < ROUNDS; r++) {
    const start = process.hrtime.bigint()
    for (let i = 0; i < calls; i++) await fn()
    rounds.push(Number(process.hrtime.bigint() - start) / 1000 / calls)
  }
  return summarize(rounds)
}

/** A request as the gateway sees it: a browser's dozen headers, a bearer token and a cookie. */
const REQUEST = {
  method: 'GET',
  url: '/notebooks/api/contents/work/report.ipynb?type=notebook&content=1',
  headers: { host: 'apps.example.com' },
  rawHeaders: [
    'Host', 'apps.example.com', 'User-Agent', 'Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 Chrome/131.0 Safari/537.36',
    'Accept', 'application/json, text/plain, */*', 'Accept-Language', 'en-GB,en;q=0.9', 'Accept-Encoding', 'gzip, deflate, br',
    'Authorization', `Bearer ${'x'.repeat(180)}`, 'Cookie', 'theme=dark; _xsrf=2|abcdef|0123456789', 'Referer', 'https://apps.example.com/notebooks/tree',
    'Sec-Fetch-Mode', 'cors', 'Sec-Fetch-Site', 'same-origin', 'X-Requested-With', 'XMLHttpRequest',
  ],
  socket: { remoteAddress: '10.0.3.17' },
} as unknown as IncomingMessage

const dir = mkdtempSync(join(tmpdir(), 'podgate-identity-bench-'))
try {
  const keys = {
    EdDSA: generateKeyPairSync('ed25519', { privateKeyEncoding: { type: 'pkcs8', format: 'pem' }, publicKeyEncoding: { type: 'spki', format: 'pem' } }).privateKey,
    ES256: generateKeyPairSync('ec', { namedCurve: 'P-256', privateKeyEncoding: { type: 'pkcs8', format: 'pem' }, publicKeyEncoding: { type: 'spki', format: 'pem' } }).privateKey,
  }
  const base: ForwardingOptions = { userHeader: 'x-user-id', trustProxy: false, cookieName: 'session', forwardCredentials: false }
  const rows: [string, Summary][] = [['upstreamHeaders, identity off', perCall(() => upstreamHeaders(REQUEST, 'alice', base), 200_000)]]
  const data = Buffer.from('e'.repeat(300))
  for (const alg of ['EdDSA', 'ES256'] as const) {
    const file = join(dir, `${alg}.pem`)
    writeFileSync(file, keys[alg])
    const config = (binding: string) => loadConfig({ PODGATE_JWT_SECRET: 'x'.repeat(32), PODGATE_IDENTITY_KEY: file, PODGATE_IDENTITY_BINDING: binding }).gateway.identity
    const bound = config('request')
    if (bound === undefined) throw new Error('identity is off')
    const key = bound.key
    rows.push([`${alg}: signature alone (node:crypto, 300-byte input)`, perCall(() => key.sign(data), 20_000)])
    const signer = createIdentitySigner(bound)
    rows.push([`${alg}: token, request binding`, perCall(() => signer?.token('alice', 'GET', REQUEST.url ?? '/'), 20_000)])
    rows.push([`${alg}: upstreamHeaders, request binding`, perCall(() => upstreamHeaders(REQUEST, 'alice', { ...base, identity: signer }), 20_000)])
    const perUser = createIdentitySigner(config('user'))
    rows.push([`${alg}: upstreamHeaders, user binding (token reused)`, perCall(() => upstreamHeaders(REQUEST, 'alice', { ...base, identity: perUser }), 200_000)])
    const token = signer?.token('alice', 'GET', '/') ?? ''
    const jwks = createLocalJWKSet({ keys: bound.published } as unknown as JSONWebKeySet)
    rows.push([`${alg}: a pod verifies one (jose jwtVerify, local JWKS)`, await perCallAsync(() => jwtVerify(token, jwks, { audience: 'user-alice' }), 5_000)])
  }
  const width = Math.max(...rows.map(([name]) => name.length))
  console.log(`node ${process.version}, µs per call: median of ${ROUNDS} rounds (spread between rounds)`)
  for (const [name, us] of rows) console.log(`${name.padEnd(width)}  ${us.median.toFixed(2).padStart(7)}  (${us.spreadPct.toFixed(0)}%)`)
} finally {
  rmSync(dir, { recursive: true, force: true })
}
