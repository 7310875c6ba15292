// CPU time and memory of a process group, read from /proc (Linux only). A proxy may be
// several processes (nginx master + worker, a cluster of Node workers): all are summed.
import { execFileSync } from 'node:child_process'
import { readdirSync, readFileSync } from 'node:fs'

export interface GroupSample {
  /** utime + stime of every live member, in clock ticks. */
  readonly cpuTicks: number
  /** Sum of VmRSS, in KiB. */
  readonly rssKb: number
  /** Sum of VmHWM (each member's peak RSS), in KiB. */
  readonly peakRssKb: number
  readonly processes: number
}

export interface StatFields {
  /** R, S, D, Z (zombie: exited, not yet reaped), … */
  readonly state: string
  readonly pgrp: number
  readonly utime: number
  readonly stime: number
}

/** Parses /proc/<pid>/stat; the command name may contain spaces and parentheses. */
export function parseStat (text: string): StatFields | undefined {
  const close = text.lastIndexOf(')')
  if (close === -1) return undefined
  // fields after the name start at field 3 (state): pgrp is field 5, utime 14, stime 15
  const fields = text.slice(close + 2).split(' ')
  const state = fields[0] ?? ''
  const pgrp = Number(fields[2])
  const utime = Number(fields[11])
  const stime = Number(fields[12])
  if (![pgrp, utime, stime].every(Number.isInteger)) return undefined
  return { state, pgrp, utime, stime }
}

/** Reads a "Name:   1234 kB" line of /proc/<pid>/status, in KiB. */
export function parseStatusKb (text: string, field: string): number | undefined {
  const match = new RegExp(`^${field}:\\s+(\\d+) kB$`, 'm').exec(text)
  return match === null ? undefined : Number(match[1])
}

export function sampleGroup (pgid: number, procDir = '/proc'): GroupSample {
  let cpuTicks = 0
  let rssKb = 0
  let peakRssKb = 0
  let processes = 0
  for (const entry of readdirSync(procDir)) {
    if (!/^\d+$/.test(entry)) continue
    const stat = readOrUndefined(`${procDir}/${entry}/stat`)
    const fields = stat === undefined ? undefined : parseStat(stat)
    if (fields === undefined || fields.pgrp !== pgid || fields.state === 'Z') continue
    const status = readOrUndefined(`${procDir}/${entry}/status`) ?? ''
    cpuTicks += fields.utime + fields.stime
    rssKb += parseStatusKb(status, 'VmRSS') ?? 0
    peakRssKb += parseStatusKb(status, 'VmHWM') ?? 0
    processes += 1
  }
  return { cpuTicks, rssKb, peakRssKb, processes }
}

export function clockTicksPerSecond (): number {
  try {
    const ticks = Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).trim())
    return Number.isInteger(ticks) && ticks > 0 ? ticks : 100
  } catch {
    return 100
  }
}

function readOrUndefined (path: string): string | undefined {
  try {
    return readFileSync(path, 'utf8')
  } catch {
    return undefined // the process exited between readdir and read
  }
}
