// The minimal Node proxy of the benchmark issue's reference table (node:http + undici +
// jose with a token cache): the floor of podgate's own stack, measured in the same run.
import { join } from 'node:path'
import { forkEnv } from '../../src/workers/worker-options.ts'
import { bearer, hs256Key } from '../tokens.ts'
import type { BenchPath, Measure } from './types.ts'

const START_TIMEOUT_MS = 15_000

export function minimalPath (measures: readonly Measure[]): BenchPath {
  return {
    id: 'node-minimal',
    title: 'minimal node:http + undici + jose with a token cache (the floor of podgate\'s stack)',
    measures,
    async start (context) {
      const key = hs256Key()
      const proxy = context.processes.spawn('node-minimal', process.execPath, [
        join(context.benchDir, 'minimal-proxy.ts'), '--upstream', context.upstream.address, '--secret', key.verifier,
      // The Node options podgate ships with (bench/paths/podgate.ts sets the same), so the floor runs on the same heap.
      ], { cpus: context.cpus.proxy, env: forkEnv(process.env, []) })
      const listening = await proxy.jsonLine<{ port?: unknown }>('listening', START_TIMEOUT_MS)
      if (typeof listening.port !== 'number') throw new Error(`minimal proxy printed no port: ${JSON.stringify(listening)}`)
      return { baseUrl: `http://127.0.0.1:${listening.port}`, headerSets: [bearer(await key.sign('alice', 'node-minimal'))], proxyPgid: proxy.pid }
    },
  }
}
