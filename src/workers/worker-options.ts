// What a forked gateway worker's Node starts with, unless the operator set the same thing:
// - a fixed young generation: V8 sizes it from the memory it sees, 64 MiB semi-spaces on a
//   large machine without a limit (over 100 MiB of new space after seconds of load), 1 MiB
//   in a 512 MiB container (short-lived request objects promoted into the old space);
// - two V8 background threads rather than four, and two glibc malloc arenas rather than up
//   to one per thread, each of which keeps the most it ever held.
// All of it goes through the environment, so a worker's command line (which port-holder
// messages show) stays as it was. docs/adr/0014-memory.md has the measurements.
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
