// The one upstream every path proxies to: the built-in backend (src/local/backend.ts) when it
// exists, else the fixed responder in this folder. Both serve GET /fixed (100 bytes),
// POST /echo, GET /bytes?n= and a /ws echo, and print {"listening":{...}} when ready.
import { existsSync } from 'node:fs'
import { join } from 'node:path'
import type { BenchProcess, ProcessGroup } from './processes.ts'

export type UpstreamChoice = 'auto' | 'backend' | 'fixed'

export interface Upstream {
  readonly kind: 'built-in backend' | 'bench fixed responder'
  /** host:port, as route files want it. */
  readonly address: string
  readonly url: string
  readonly process: BenchProcess
}

const START_TIMEOUT_MS = 15_000

export async function startUpstream (options: {
  readonly processes: ProcessGroup
  readonly repoDir: string
  readonly benchDir: string
  readonly cpus: readonly number[] | undefined
  readonly choice: UpstreamChoice
}): Promise<Upstream> {
  const backend = join(options.repoDir, 'src', 'local', 'backend.ts')
  const useBackend = options.choice === 'backend' || (options.choice === 'auto' && existsSync(backend))
  const script = useBackend ? backend : join(options.benchDir, 'fixed-responder.ts')
  const child = options.processes.spawn('upstream', process.execPath, [script, '--user', 'alice', '--port', '0'], { cpus: options.cpus, cwd: options.repoDir })
  const listening = await child.jsonLine<{ address?: unknown, port?: unknown }>('listening', START_TIMEOUT_MS)
  if (typeof listening.port !== 'number') throw new Error(`upstream printed no port: ${JSON.stringify(listening)}`)
  const address = `127.0.0.1:${listening.port}`
  return { kind: useBackend ? 'built-in backend' : 'bench fixed responder', address, url: `http://${address}`, process: child }
}
