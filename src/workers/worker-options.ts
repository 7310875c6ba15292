// The Node options a forked gateway worker starts with. V8 sizes the young generation from
// the memory it sees: 64 MiB semi-spaces on a large machine without a limit (over 100 MiB
// of new space after a few seconds of load), 1 MiB in a 512 MiB container (short-lived
// request objects promoted into the old space). A worker gets one fixed size instead, unless
// the operator chose one; docs/adr/0014-memory.md has the measurements. It goes in
// NODE_OPTIONS, so a worker's command line (which port-holder messages show) stays as it was.
export const WORKER_SEMI_SPACE_MIB = 8
export const SEMI_SPACE_OPTION = `--max-semi-space-size=${WORKER_SEMI_SPACE_MIB}`

const SETS_SEMI_SPACE = /^--max[-_]semi[-_]space[-_]size(=|$)/

/** The worker's environment: `env`, with the young generation's size unless `execArgv` or NODE_OPTIONS sets one. */
export function forkEnv (env: NodeJS.ProcessEnv, execArgv: readonly string[]): NodeJS.ProcessEnv {
  const nodeOptions = env.NODE_OPTIONS ?? ''
  // NODE_OPTIONS may quote each option ("--a" "--b").
  if ([...execArgv, ...nodeOptions.split(/\s+/).map((option) => option.replace(/^"/, ''))].some((option) => SETS_SEMI_SPACE.test(option))) return env
  return { ...env, NODE_OPTIONS: `${nodeOptions} ${SEMI_SPACE_OPTION}`.trim() }
}
