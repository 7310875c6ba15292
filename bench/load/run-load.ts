// Runs one load generator script (load/*.ts) in its own process on the load generator's CPUs
// and returns the JSON line it prints last.
import { join } from 'node:path'
import type { PathContext } from '../paths/types.ts'

/** Allowance beyond the run's own duration for start-up and reading results. */
const GRACE_S = 30

export async function runLoad<T> (script: string, spec: object, durationS: number, context: PathContext): Promise<T> {
  const child = context.processes.spawn(script, process.execPath, [join(context.benchDir, 'load', script), JSON.stringify(spec)], { cpus: context.cpus.load })
  return await child.result<T>((durationS + GRACE_S) * 1000)
}
