// What the numbers were measured on, and which CPUs each role is pinned to.
import { execFileSync } from 'node:child_process'
import { readFileSync } from 'node:fs'
import { cpus, release, totalmem } from 'node:os'

export interface Machine {
  readonly cpuModel: string
  readonly cpus: number
  readonly allowedCpus: readonly number[]
  readonly memoryGiB: number
  readonly node: string
  readonly kernel: string
}

/** CPUs per role; undefined means not pinned. */
export interface CpuPlan {
  readonly load: readonly number[] | undefined
  readonly proxy: readonly number[] | undefined
  readonly upstream: readonly number[] | undefined
  readonly description: string
}

export function describeMachine (): Machine {
  return {
    cpuModel: cpus()[0]?.model.trim() ?? 'unknown',
    cpus: cpus().length,
    allowedCpus: allowedCpus(readFileSync('/proc/self/status', 'utf8')),
    memoryGiB: Math.round(totalmem() / 1024 ** 3 * 10) / 10,
    node: process.version,
    kernel: release(),
  }
}

/** Parses Cpus_allowed_list ("0-3,6") from /proc/self/status. */
export function allowedCpus (status: string): number[] {
  const list = /^Cpus_allowed_list:\s*(\S+)$/m.exec(status)?.[1]
  if (list === undefined) return []
  const result: number[] = []
  for (const part of list.split(',')) {
    const [from, to] = part.split('-').map(Number)
    if (from === undefined || !Number.isInteger(from)) continue
    for (let cpu = from; cpu <= (to ?? from); cpu++) result.push(cpu)
  }
  return result
}

/**
 * Load generator on the first CPU, proxy on the last; the upstream gets the CPUs between
 * (none on a 2-CPU machine, where the scheduler places it). Pinning needs taskset and 2+ CPUs.
 */
export function planCpus (allowed: readonly number[], tasksetAvailable: boolean): CpuPlan {
  const first = allowed[0]
  const last = allowed[allowed.length - 1]
  if (!tasksetAvailable || allowed.length < 2 || first === undefined || last === undefined) {
    const why = tasksetAvailable ? `only ${allowed.length} CPU allowed` : 'taskset not found'
    return { load: undefined, proxy: undefined, upstream: undefined, description: `not pinned (${why}): load generator, proxy and upstream share the CPUs` }
  }
  const middle = allowed.slice(1, -1)
  const upstream = middle.length > 0 ? middle : undefined
  return {
    load: [first],
    proxy: [last],
    upstream,
    description: `taskset: load generator on CPU ${first}, proxy on CPU ${last}, ` +
      (upstream === undefined ? 'upstream unpinned (shares both)' : `upstream on CPUs ${upstream.join(',')}`),
  }
}

export function hasTaskset (): boolean {
  try {
    execFileSync('taskset', ['-p', String(process.pid)], { stdio: 'ignore' })
    return true
  } catch {
    return false
  }
}
