// How much CPU other programs took while the benchmark ran: on a shared machine that, more
// than anything, decides whether the numbers can be trusted.
import { readFileSync } from 'node:fs'
import { parseStat, sampleGroup } from './proc-stats.ts'

export interface CpuCounters {
  /** Busy clock ticks of the whole machine (/proc/stat), all CPUs. */
  readonly machineTicks: number
  /** Ticks of this process, its reaped children, and the still-running groups given. */
  readonly ownTicks: number
}

/** The busy (non-idle, non-iowait) ticks on the "cpu" line of /proc/stat. */
export function parseBusyTicks (procStat: string): number {
  const line = /^cpu\s+(.+)$/m.exec(procStat)?.[1]
  if (line === undefined) throw new Error('/proc/stat has no cpu line')
  const [user = 0, nice = 0, system = 0, _idle = 0, _iowait = 0, irq = 0, softirq = 0, steal = 0] = line.trim().split(/\s+/).map(Number)
  return user + nice + system + irq + softirq + steal
}

export function readCpuCounters (runningPgids: readonly number[]): CpuCounters {
  const self = readFileSync('/proc/self/stat', 'utf8')
  const fields = self.slice(self.lastIndexOf(')') + 2).split(' ').map(Number)
  // utime, stime, cutime, cstime are fields 14-17; the slice starts at field 3
  const selfTicks = (fields[11] ?? 0) + (fields[12] ?? 0) + (fields[13] ?? 0) + (fields[14] ?? 0)
  if (parseStat(self) === undefined) throw new Error('cannot parse /proc/self/stat')
  const groupTicks = runningPgids.reduce((sum, pgid) => sum + sampleGroup(pgid).cpuTicks, 0)
  return { machineTicks: parseBusyTicks(readFileSync('/proc/stat', 'utf8')), ownTicks: selfTicks + groupTicks }
}

/** Share (0–1) of the allowed CPUs' time that other programs used between two readings. */
export function backgroundShare (before: CpuCounters, after: CpuCounters, elapsedS: number, cpus: number, ticksPerSecond: number): number {
  const others = (after.machineTicks - before.machineTicks) - (after.ownTicks - before.ownTicks)
  const available = elapsedS * cpus * ticksPerSecond
  return available <= 0 ? 0 : Math.min(1, Math.max(0, others / available))
}

export interface QuietOptions {
  /** Give up waiting after this long, and run anyway. */
  readonly maxWaitS: number
  /** Busy share (0–1) of the machine below which it counts as quiet. */
  readonly threshold: number
  readonly sampleS: number
  readonly cpus: number
  readonly ticksPerSecond: number
  readonly readMachineTicks?: () => number
  readonly delay?: (ms: number) => Promise<void>
}

/** Waits (bounded) until the machine is quiet before measuring; returns the last busy share seen. */
export async function waitForQuiet (options: QuietOptions): Promise<number> {
  const readTicks = options.readMachineTicks ?? (() => parseBusyTicks(readFileSync('/proc/stat', 'utf8')))
  const delay = options.delay ?? (async (ms: number) => { await new Promise((resolve) => setTimeout(resolve, ms)) })
  const samples = Math.max(1, Math.ceil(options.maxWaitS / options.sampleS))
  let busy = 1
  for (let sample = 0; sample < samples; sample++) {
    const before = readTicks()
    await delay(options.sampleS * 1000)
    busy = Math.min(1, (readTicks() - before) / (options.sampleS * options.cpus * options.ticksPerSecond))
    if (busy < options.threshold) return busy
  }
  return busy
}
