// The minimal Node proxy of the benchmark issue's reference table (node:http + undici +
// jose with a token cache): the floor of podgate's own stack, measured in the same run.
import { join } from 'node:path'
import { forkEnv } from '../../src/workers/worker-options.ts'
import { bearer, hs256Key } from '../tokens.ts'
import type { BenchPath, Measure } from './types.ts'

const START_TIMEOUT_MS = 15_000

/** The pieces of podgate `minimal-proxy.ts --step` adds to the floor, one per path (what each is: that file's opening comment). */
export const MINIMAL_STEPS = ['server-limits', 'headers', 'checks', 'accounting', 'exchange'] as const
export type MinimalStep = typeof MINIMAL_STEPS[number]

const STEP_TITLES: Record<MinimalStep, string> = {
  'server-limits': 'podgate\'s server timeouts and header limits',
  'headers': 'podgate\'s request and response header handling',
  'checks': 'podgate\'s request check and verified-token cache',
  'accounting': 'podgate\'s per-request metrics, timings and listeners',
  'exchange': 'podgate\'s forward(): response class, endpoint pools, Exchange handler',
}

/** Every step at once: podgate's request path rebuilt from its pieces, without the rest of its process. */
export const ALL_STEPS = 'all'

/**
 * Not a piece of podgate but a floor of its own: the minimal proxy sending the request headers
 * podgate sends by default, built by the floor itself with fixed values. What those headers
 * cost on the way out (undici's checks, the longer request, the kernel), with none of podgate's code.
 */
export const WIRE_STEP = 'wire'

/** The path id of the floor (no step) or of the floor with `step`. */
export function minimalPathId (step?: MinimalStep | typeof ALL_STEPS | typeof WIRE_STEP): string {
  return step === undefined ? 'node-minimal' : `node-minimal-${step}`
}

export function minimalPath (measures: readonly Measure[], step?: MinimalStep | typeof ALL_STEPS | typeof WIRE_STEP): BenchPath {
  const steps = step === ALL_STEPS ? MINIMAL_STEPS : step === undefined ? [] : [step]
  const id = minimalPathId(step)
  return {
    id,
    title: step === undefined
      ? 'minimal node:http + undici + jose with a token cache (the floor of podgate\'s stack)'
      : step === ALL_STEPS
        ? 'the minimal proxy plus every piece above (podgate\'s request path without the rest of its process)'
        : step === WIRE_STEP
          ? 'the minimal proxy sending podgate\'s default request headers (X-Forwarded-For, -Proto, -Host, a traceparent), none of its code'
          : `the minimal proxy plus ${STEP_TITLES[step]}`,
    measures,
    async start (context) {
      const key = hs256Key()
      const proxy = context.processes.spawn(id, process.execPath, [
        join(context.benchDir, 'minimal-proxy.ts'), '--upstream', context.upstream.address, '--secret', key.verifier, ...(steps.length === 0 ? [] : ['--step', steps.join(',')]),
      // The Node options podgate ships with (bench/paths/podgate.ts sets the same), so the floor runs on the same heap.
      ], { cpus: context.cpus.proxy, env: forkEnv(process.env, []) })
      const listening = await proxy.jsonLine<{ port?: unknown }>('listening', START_TIMEOUT_MS)
      if (typeof listening.port !== 'number') throw new Error(`minimal proxy printed no port: ${JSON.stringify(listening)}`)
      return { baseUrl: `http://127.0.0.1:${listening.port}`, headerSets: [bearer(await key.sign('alice', 'node-minimal'))], proxyPgid: proxy.pid }
    },
  }
}
