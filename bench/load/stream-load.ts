// Streams a large body up to an echo endpoint and reads the echo back, never holding more
// than one chunk. Usage: node stream-load.ts '<StreamLoadSpec JSON>'; prints one JSON line.
import { request } from 'node:http'
import { parseSpec } from './spec.ts'

export interface StreamLoadSpec {
  readonly url: string
  readonly bytes: number
  readonly headers: Record<string, string>
  readonly timeoutS: number
}

export interface StreamLoadResult {
  readonly status: number
  readonly sentBytes: number
  readonly receivedBytes: number
  readonly durationS: number
  readonly mibPerS: number
}

const CHUNK = Buffer.alloc(64 * 1024, 'x')

const spec = parseSpec<StreamLoadSpec>(process.argv[2], ['url', 'bytes', 'headers', 'timeoutS'])
const started = performance.now()

const result = await new Promise<StreamLoadResult>((resolve, reject) => {
  let sentBytes = 0
  const upload = request(spec.url, {
    method: 'POST',
    agent: false,
    headers: { ...spec.headers, 'content-type': 'application/octet-stream', 'content-length': String(spec.bytes) },
    signal: AbortSignal.timeout(spec.timeoutS * 1000),
  }, (response) => {
    let receivedBytes = 0
    response.on('data', (chunk: Buffer) => { receivedBytes += chunk.length })
    response.once('error', reject)
    response.once('end', () => {
      const durationS = (performance.now() - started) / 1000
      resolve({ status: response.statusCode ?? 0, sentBytes, receivedBytes, durationS, mibPerS: receivedBytes / 1048576 / durationS })
    })
  })
  upload.once('error', reject)
  const writeMore = (): void => {
    while (sentBytes < spec.bytes) {
      const chunk = spec.bytes - sentBytes >= CHUNK.length ? CHUNK : CHUNK.subarray(0, spec.bytes - sentBytes)
      sentBytes += chunk.length
      if (!upload.write(chunk)) { upload.once('drain', writeMore); return }
    }
    upload.end()
  }
  writeMore()
})

process.stdout.write(JSON.stringify(result) + '\n')
