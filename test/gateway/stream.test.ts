// 200 MB up and 200 MB down through a real `podgate serve` process: bytes identical, and
// the gateway's memory flat (streams, not buffers).
import { createHash, randomBytes } from 'node:crypto'
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { Readable } from 'node:stream'
import t from 'tap'
import { Agent, request } from 'undici'
import { mintToken } from '../../src/auth/mint.ts'
import { createBackend, patternByte } from '../../src/local/backend.ts'
import { startServe } from '../support/serve.ts'

const SIZE = 200 * 1024 * 1024
const CHUNK = 256 * 1024
const MAX_GROWTH = 50 * 1024 * 1024

/** SIZE bytes of a deterministic pattern, generated as they are read. */
function source (): { stream: Readable, digest: () => string } {
  const hash = createHash('sha256')
  const block = randomBytes(CHUNK)
  let sent = 0
  const stream = new Readable({
    read () {
      if (sent >= SIZE) {
        this.push(null)
        return
      }
      const n = Math.min(CHUNK, SIZE - sent)
      block[0] = sent & 0xff // each chunk differs, so a reordering would show
      const chunk = Buffer.from(block.subarray(0, n))
      sent += n
      hash.update(chunk)
      this.push(chunk)
    },
  })
  return { stream, digest: () => hash.digest('hex') }
}

void t.test('200 MB each way through podgate serve, byte-identical, with flat memory', async (t) => {
  const backend = await createBackend({ user: 'alice' })
  t.teardown(() => backend.close())
  const dir = mkdtempSync(join(tmpdir(), 'podgate-stream-'))
  t.teardown(() => { rmSync(dir, { recursive: true, force: true }) })
  const routes = join(dir, 'routes.json')
  writeFileSync(routes, JSON.stringify({ alice: [`127.0.0.1:${backend.address.port}`] }))
  const secret = randomBytes(32).toString('hex')
  const serve = await startServe(t, { PODGATE_JWT_SECRET: secret, PODGATE_LOCAL_ROUTES: routes })
  const token = await mintToken({ secret: new TextEncoder().encode(secret), user: 'alice', ttlSeconds: 600 })
  const dispatcher = new Agent()
  t.teardown(() => dispatcher.close())
  const headers = { authorization: `Bearer ${token}` }

  for (let i = 0; i < 20; i++) await (await request(serve.gatewayUrl, { dispatcher, headers })).body.dump()
  const baseline = serve.rss()
  let peak = baseline
  const sampler = setInterval(() => { peak = Math.max(peak, serve.rss()) }, 50)
  t.teardown(() => { clearInterval(sampler) })

  const up = source()
  const res = await request(`${serve.gatewayUrl}/echo`, {
    dispatcher,
    method: 'POST',
    headers: { ...headers, 'content-type': 'application/octet-stream' },
    body: up.stream,
  })
  t.equal(res.statusCode, 200)
  const back = createHash('sha256')
  let received = 0
  for await (const chunk of res.body) {
    back.update(chunk as Buffer)
    received += (chunk as Buffer).length
  }
  t.equal(received, SIZE, '200 MB came back')
  t.equal(back.digest('hex'), up.digest(), 'echoed bytes are identical')

  const down = await request(`${serve.gatewayUrl}/bytes?n=${SIZE}`, { dispatcher, headers })
  t.equal(down.statusCode, 200)
  let offset = 0
  let mismatch = -1
  for await (const chunk of down.body) {
    const bytes = chunk as Buffer
    for (let i = 0; i < bytes.length && mismatch === -1; i += 4093) if (bytes[i] !== patternByte(offset + i)) mismatch = offset + i
    offset += bytes.length
  }
  t.equal(offset, SIZE, '200 MB downloaded')
  t.equal(mismatch, -1, 'download content matches the pattern')

  clearInterval(sampler)
  peak = Math.max(peak, serve.rss())
  const growth = peak - baseline
  t.comment(`gateway RSS ${(baseline / 1048576).toFixed(1)} MB at rest, peak ${(peak / 1048576).toFixed(1)} MB`)
  t.ok(growth < MAX_GROWTH, `RSS grew ${(growth / 1048576).toFixed(1)} MB (limit 50 MB)`)
  t.equal(await serve.stop(), 0, 'SIGTERM drains and exits 0')
})
