// The minimal Node proxy of the benchmark issue's reference table (node:http + undici +
// jose with a token cache): the floor of podgate's own stack, measured in the same run.
import { join } from 'node:path'
import { forkEnv } from '../../src/workers/worker-options.ts'
import { bearer, hs256Key } from '../tokens.ts'
import type { BenchPath, Measure } from './types.ts'

const START_TIMEOUT_MS = 15_000

/** The pieces of podgate `minimal-proxy.ts --step` adds to the floor, one per path (what each is: that file's opening comment). */
export const MINIMAL_STEPS = ['server-limits', 'headers', 'checks', 'accounting'] as const
export type MinimalStep = typeof MINIMAL_STEPS[number]

const STEP_TITLES: Record<MinimalStep, string> = {
  'server-limits': 'podgate\'s server timeouts and header limits',
  'headers': 'podgate\'s request and response header handling',
  'checks': 'podgate\'s request check and verified-token cache',
  'accounting': 'podgate\'s per-request metrics, timings and listeners',
}

export function minimalPath (measures: readonly Measure[], step?: MinimalStep): BenchPath {
  return {
    id: step === undefined ? 'node-minimal' : `node-minimal-${step}`,
    title: step === undefined ? 'minimal node:http + undici + jose with a token cache (the floor of podgate\'s stack)' : `the minimal proxy plus ${STEP_TITLES[step]}`,
    measures,
    async start (context) {
      const key = hs256Key()
      const proxy = context.processes.spawn(step === undefined ? 'node-minimal' : `node-minimal-${step}`, process.execPath, [
        join(context.benchDir, 'minimal-proxy.ts'), '--upstream', context.upstream.address, '--secret', key.verifier, ...(step === undefined ? [] : ['--step', step]),
      // The Node options podgate ships with (bench/paths/podgate.ts sets the same), so the floor runs on the same heap.
      ], { cpus: context.cpus.proxy, env: forkEnv(process.env, []) })
      const listening = await proxy.jsonLine<{ port?: unknown }>('listening', START_TIMEOUT_MS)
      if (typeof listening.port !== 'number') throw new Error(`minimal proxy printed no port: ${JSON.stringify(listening)}`)
      return { baseUrl: `http://127.0.0.1:${listening.port}`, headerSets: [bearer(await key.sign('alice', 'node-minimal'))], proxyPgid: proxy.pid }
    },
  }
}
