// Single HTTP requests the harness makes itself: readiness polling, sanity checks, free ports.
import { request } from 'node:http'
import { createServer } from 'node:net'
import { setTimeout as sleep } from 'node:timers/promises'
import type { BenchProcess } from './processes.ts'

export interface ProbeResponse {
  readonly status: number
  readonly headers: Record<string, string | string[] | undefined>
  readonly body: Buffer
}

/** One request on its own connection (no shared agent), bounded by `timeoutMs`. */
export async function probe (url: string, options: { method?: string, headers?: Record<string, string>, body?: string, timeoutMs?: number } = {}): Promise<ProbeResponse> {
  return await new Promise((resolve, reject) => {
    const outgoing = request(url, { method: options.method ?? 'GET', headers: options.headers, agent: false, signal: AbortSignal.timeout(options.timeoutMs ?? 5000) }, (response) => {
      const chunks: Buffer[] = []
      response.on('data', (chunk: Buffer) => { chunks.push(chunk) })
      response.once('error', reject)
      response.once('end', () => { resolve({ status: response.statusCode ?? 0, headers: response.headers, body: Buffer.concat(chunks) }) })
    })
    outgoing.once('error', reject)
    outgoing.end(options.body)
  })
}

/** Polls `url` until `ready(status)`; fails fast if `process` exits first. */
export async function waitUntilReady (url: string, options: { process: BenchProcess, timeoutMs: number, ready?: (status: number) => boolean, headers?: Record<string, string> }): Promise<void> {
  const ready = options.ready ?? ((status: number) => status === 200)
  const deadline = Date.now() + options.timeoutMs
  let last = 'no response'
  while (Date.now() < deadline) {
    if (!options.process.running) throw new Error(`${options.process.name} exited while starting:\n${options.process.tail()}`)
    try {
      const response = await probe(url, { headers: options.headers, timeoutMs: 1000 })
      if (ready(response.status)) return
      last = `HTTP ${response.status}`
    } catch (err) {
      last = (err as Error).message
    }
    await sleep(100)
  }
  throw new Error(`${options.process.name} not ready at ${url} within ${options.timeoutMs} ms (${last}):\n${options.process.tail()}`)
}

/** A port that was free a moment ago, for programs that cannot report the port they bound. */
export async function freePort (): Promise<number> {
  return await new Promise((resolve, reject) => {
    const server = createServer()
    server.once('error', reject)
    server.listen(0, '127.0.0.1', () => {
      const address = server.address()
      server.close(() => {
        if (address !== null && typeof address === 'object') resolve(address.port)
        else reject(new Error('no port'))
      })
    })
  })
}
