// What a forked gateway worker's Node starts with, unless the operator set the same thing:
// - a fixed young generation: V8 sizes it from the memory it sees, 64 MiB semi-spaces on a
//   large machine without a limit (over 100 MiB of new space after seconds of load), 1 MiB
//   in a 512 MiB container (short-lived request objects promoted into the old space);
// - two V8 background threads rather than four, and two glibc malloc arenas rather than up
//   to one per thread, each of which keeps the most it ever held.
// All of it goes through the environment, so a worker's command line (which port-holder
// messages show) stays as it was. docs/adr/0014-memory.md has the measurements.
// Every gateway process (`podgate serve`, `podgate demo`, each worker) also sets V8 flags for
// itself at start, flags NODE_OPTIONS may not carry: GATEWAY_V8_FLAGS.
import { setFlagsFromString } from 'node:v8'

export const WORKER_NODE_OPTIONS: readonly string[] = ['--max-semi-space-size=8', '--v8-pool-size=2']
export const WORKER_MALLOC_ARENA_MAX = '2'

/** `--max_semi_space_size=2` and `"--max-semi-space-size"` name the same option. */
const optionName = (option: string): string => option.replace(/^"/, '').split('=')[0]!.replaceAll('_', '-')

/** The worker's environment: `env` plus whichever of the defaults neither `execArgv` nor `env` sets. */
export function forkEnv (env: NodeJS.ProcessEnv, execArgv: readonly string[]): NodeJS.ProcessEnv {
  const nodeOptions = env.NODE_OPTIONS ?? ''
  const given = new Set([...execArgv, ...nodeOptions.split(/\s+/)].map(optionName))
  const added = WORKER_NODE_OPTIONS.filter((option) => !given.has(optionName(option)))
  return {
    ...env,
    ...(added.length === 0 ? {} : { NODE_OPTIONS: [nodeOptions, ...added].join(' ').trim() }),
    MALLOC_ARENA_MAX: env.MALLOC_ARENA_MAX ?? WORKER_MALLOC_ARENA_MAX,
  }
}

/**
 * V8 flags a gateway process sets for itself before its request path first runs.
 * `--no-allocation-site-pretenuring`: V8 decides per allocation site whether its objects are
 * created straight in the old generation once most of them survived a scavenge; start-up
 * (everything survives) or a scavenge with 64 requests in flight tips sites of the request
 * path, whose objects then fill the old space with garbage: under sustained load most runs took
 * 18–30% more CPU per request, 7 times the mark-compacts and 30 MiB more memory
 * (docs/adr/0015-allocation-site-pretenuring.md).
 */
export const GATEWAY_V8_FLAGS: readonly string[] = ['--no-allocation-site-pretenuring']

/** A V8 flag's name without `--`, `no-` and with `-` for `_`: `--no-allocation_site_pretenuring` → `allocation-site-pretenuring`. */
const flagName = (flag: string): string => optionName(flag).replace(/^--(no-)?/, '')

/**
 * Sets each of GATEWAY_V8_FLAGS that the process's command line (`execArgv`) does not name
 * either way, so `node --allocation-site-pretenuring` keeps V8's default; returns those set.
 */
export function applyGatewayV8Flags (execArgv: readonly string[], set: (flag: string) => void = setFlagsFromString): string[] {
  const named = new Set(execArgv.map(flagName))
  const applied = GATEWAY_V8_FLAGS.filter((flag) => !named.has(flagName(flag)))
  for (const flag of applied) set(flag)
  return applied
}
