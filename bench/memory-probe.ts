// What a measured process says about its own memory. The probe is loaded into it with
// `--import` of a data: URL (no file to find, nothing to strip types from), so the gateway
// workers a primary forks inherit it with the rest of its execArgv. On SIGUSR2 it writes one
// sample to <MEMORY_PROBE_DIR>/<pid>.json (and one as soon as it loads, so the directory
// lists every probed process); the harness signals and waits for the next sequence number.
import { readdirSync, readFileSync } from 'node:fs'
import { join } from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'

export const PROBE_DIR_VARIABLE = 'MEMORY_PROBE_DIR'

export interface MemorySample {
  readonly pid: number
  /** Increases by one with every sample this process writes. */
  readonly seq: number
  /** `worker` for a forked gateway worker, else `main`. */
  readonly role: 'main' | 'worker'
  /** From /proc/self/status and /proc/self/smaps_rollup, in KiB. */
  readonly rssKb: number
  readonly peakRssKb: number
  readonly anonKb: number
  /** Pages no other process maps (private clean + dirty): what this process alone costs. */
  readonly privateKb: number
  readonly threads: number
  /** process.memoryUsage(), in bytes. */
  readonly heapUsed: number
  readonly heapTotal: number
  readonly external: number
  readonly arrayBuffers: number
  /** V8's resident size per heap space (new_space, old_space, code_space, …), in bytes. */
  readonly spaces: Readonly<Record<string, number>>
  /** Garbage collections since the probe loaded, and their pauses on the main thread. */
  readonly gc: { readonly minor: number, readonly major: number, readonly other: number, readonly pauseMs: number }
}

/** The probe itself: plain JavaScript, run inside the measured process. */
const PROBE_SOURCE = `
import { readFileSync, renameSync, writeFileSync } from 'node:fs'
import { PerformanceObserver, constants } from 'node:perf_hooks'
import { getHeapSpaceStatistics } from 'node:v8'
const dir = process.env.${PROBE_DIR_VARIABLE}
if (dir) {
  const gc = { minor: 0, major: 0, other: 0, pauseMs: 0 }
  new PerformanceObserver((list) => {
    for (const entry of list.getEntries()) {
      const kind = entry.detail?.kind
      if (kind === constants.NODE_PERFORMANCE_GC_MINOR) gc.minor++
      else if (kind === constants.NODE_PERFORMANCE_GC_MAJOR) gc.major++
      else gc.other++
      gc.pauseMs += entry.duration
    }
  }).observe({ entryTypes: ['gc'] })
  const kb = (text, field) => Number(new RegExp('^' + field + ':\\\\s+(\\\\d+)', 'm').exec(text)?.[1] ?? 0)
  let seq = 0
  const write = () => {
    const status = readFileSync('/proc/self/status', 'utf8')
    const rollup = readFileSync('/proc/self/smaps_rollup', 'utf8')
    const usage = process.memoryUsage()
    const sample = {
      pid: process.pid, seq: seq++,
      role: process.send !== undefined && /[/\\\\]workers[/\\\\]worker\\.[jt]s$/.test(process.argv[1] ?? '') ? 'worker' : 'main',
      rssKb: kb(status, 'VmRSS'), peakRssKb: kb(status, 'VmHWM'), threads: kb(status, 'Threads'),
      anonKb: kb(rollup, 'Anonymous'), privateKb: kb(rollup, 'Private_Clean') + kb(rollup, 'Private_Dirty'),
      heapUsed: usage.heapUsed, heapTotal: usage.heapTotal, external: usage.external, arrayBuffers: usage.arrayBuffers,
      spaces: Object.fromEntries(getHeapSpaceStatistics().map((space) => [space.space_name, space.physical_space_size])),
      gc: { ...gc },
    }
    const file = dir + '/' + process.pid + '.json'
    writeFileSync(file + '.tmp', JSON.stringify(sample))
    renameSync(file + '.tmp', file)
  }
  process.on('SIGUSR2', write)
  write()
}
`

/** The node option that loads the probe. */
export const PROBE_IMPORT = `--import=data:text/javascript,${encodeURIComponent(PROBE_SOURCE)}`

/** The latest sample of every probed process in `dir`, by pid. */
export function readSamples (dir: string): Map<number, MemorySample> {
  const samples = new Map<number, MemorySample>()
  for (const name of readdirSync(dir)) {
    if (!name.endsWith('.json')) continue
    const sample = JSON.parse(readFileSync(join(dir, name), 'utf8')) as MemorySample
    samples.set(sample.pid, sample)
  }
  return samples
}

/**
 * Asks every live process that has written to `dir` for a new sample and returns them, once
 * each has answered (at most `timeoutMs`; a process that exited meanwhile is left out).
 */
export async function takeSamples (dir: string, timeoutMs = 5000): Promise<MemorySample[]> {
  const before = readSamples(dir)
  const asked = [...before.values()].filter((sample) => signal(sample.pid))
  const deadline = Date.now() + timeoutMs
  for (;;) {
    const now = readSamples(dir)
    const answered = asked.map((sample) => now.get(sample.pid)).filter((sample) => sample !== undefined && sample.seq > (before.get(sample.pid)?.seq ?? -1))
    if (answered.length === asked.length) return answered as MemorySample[]
    if (Date.now() > deadline) throw new Error(`no memory sample within ${timeoutMs} ms from ${asked.filter((s) => !answered.some((a) => a?.pid === s.pid)).map((s) => s.pid).join(', ')}`)
    await sleep(25)
  }
}

function signal (pid: number): boolean {
  try {
    process.kill(pid, 'SIGUSR2')
    return true
  } catch {
    return false // exited
  }
}
