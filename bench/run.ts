// `npm run bench`: runs every path (bench/paths/) through the one runner (measure.ts), checks
// the goals and writes results/<date>.json and RESULTS.md. Exit code 0 even when goals are
// missed; 1 when a path failed to run; 2 on a harness error or bad usage.
import { mkdtempSync, rmSync } from 'node:fs'
import { homedir, tmpdir } from 'node:os'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { backgroundShare, readCpuCounters, waitForQuiet } from './background-load.ts'
import { evaluateGoals } from './goals.ts'
import { describeMachine, hasTaskset, planCpus } from './machine.ts'
import { measurePaths } from './measure.ts'
import type { PathResult } from './measure.ts'
import { benchPaths } from './paths/index.ts'
import { Prerequisites } from './prerequisites.ts'
import { clockTicksPerSecond } from './proc-stats.ts'
import { ProcessGroup } from './processes.ts'
import { BUSY_MACHINE_PCT, toMarkdown, writeReport } from './report.ts'
import { parseSettings, selected, UsageError } from './settings.ts'
import type { BenchSettings } from './settings.ts'
import { startUpstream } from './upstream.ts'

/** Busy share of the machine under which it counts as quiet enough to start measuring. */
const QUIET_SHARE = 0.1
const benchDir = dirname(fileURLToPath(import.meta.url))
const repoDir = dirname(benchDir)

function log (line: string): void {
  process.stderr.write(`${line}\n`)
}

async function run (settings: BenchSettings, processes: ProcessGroup, workDir: string): Promise<number> {
  const started = performance.now()
  const elapsedS = (): number => (performance.now() - started) / 1000
  const machine = describeMachine()
  const cpus = planCpus(machine.allowedCpus, hasTaskset())
  const ticksPerSecond = clockTicksPerSecond()
  log(`podgate bench${settings.quick ? ' (quick)' : ''}: ${machine.cpuModel}, ${machine.cpus} CPUs, Node ${machine.node}, Linux ${machine.kernel}`)
  log(`pinning: ${cpus.description}`)
  if (settings.quietWaitS > 0) {
    log(`waiting up to ${settings.quietWaitS} s for the machine to be quiet (under ${QUIET_SHARE * 100}% busy)`)
    const busy = await waitForQuiet({ maxWaitS: settings.quietWaitS, threshold: QUIET_SHARE, sampleS: 2, cpus: machine.cpus, ticksPerSecond })
    log(`machine ${(busy * 100).toFixed(0)}% busy${busy < QUIET_SHARE ? '' : ': measuring anyway'}`)
  }
  const countersBefore = readCpuCounters([])
  const measuringSince = performance.now()
  const prerequisites = new Prerequisites({ processes, cacheDir: join(homedir(), '.cache', 'podgate', 'bench'), install: settings.install, log })
  let upstreamKind: string | undefined
  const paths = benchPaths(settings).filter((candidate) => selected(settings, candidate.id))
  log(`starting ${paths.length} path(s), each with its own upstream, then measuring them run by run`)
  const results = await measurePaths(paths, {
    settings,
    ticksPerSecond,
    log: (line) => { log(`  ${line}`) },
    timeLeft: () => elapsedS() < settings.budgetS,
    // A fresh upstream per path: nothing one path leaves behind in it (sockets, heap, JIT
    // state) may slow another.
    contextFor: async (path) => {
      const pathProcesses = processes.child()
      const upstream = await startUpstream({ processes: pathProcesses, repoDir, benchDir, cpus: cpus.upstream, choice: settings.upstream })
      upstreamKind = upstream.kind
      log(`▶ ${path.id}: ${path.title} (upstream: ${upstream.kind} at ${upstream.address})`)
      return { repoDir, benchDir, workDir, processes: pathProcesses, cpus, upstream, prerequisites, log }
    },
  })
  for (const result of results) log(`${result.id}: ${describeResult(result)}`)
  // Every upstream has exited and been reaped by now: its CPU time counts as this process's own.
  const background = backgroundShare(countersBefore, readCpuCounters([]), (performance.now() - measuringSince) / 1000, machine.cpus, ticksPerSecond)
  if (background * 100 > BUSY_MACHINE_PCT) log(`warning: other programs used ${(background * 100).toFixed(0)}% of the CPUs during the run; the numbers are disturbed`)
  const report = {
    date: new Date().toISOString(),
    backgroundCpuPct: Math.round(background * 1000) / 10,
    quick: settings.quick,
    machine,
    pinning: cpus.description,
    upstream: upstreamKind ?? 'none (no path ran)',
    tools: { autocannon: '8', ...prerequisites.versions() },
    settings: withoutSelection(settings),
    elapsedS: elapsedS(),
    paths: results,
    goals: evaluateGoals(results),
  }
  const outDir = settings.outDir ?? (settings.quick ? mkdtempSync(join(tmpdir(), 'podgate-bench-quick-')) : benchDir)
  const written = writeReport(report, outDir)
  process.stdout.write(toMarkdown(report))
  log(`results: ${written.json}\n         ${written.markdown}`)
  const failed = results.filter((result) => result.status === 'failed')
  if (failed.length > 0) log(`${failed.length} path(s) failed: ${failed.map((result) => result.id).join(', ')}; scratch files kept in ${workDir}`)
  return failed.length > 0 ? 1 : 0
}

function describeResult (result: PathResult): string {
  if (result.status !== 'ok') return `${result.status}: ${result.reason ?? ''}`
  const parts: string[] = []
  const t = result.throughput
  if (t !== undefined) {
    parts.push(`${Math.round(t.rps.median)} req/s (±${t.rps.spreadPct.toFixed(0)}%)`, `p99 ${t.p99Ms.median.toFixed(2)} ms`)
    if (t.cpuUsPerRequest !== null) parts.push(`${t.cpuUsPerRequest.median.toFixed(1)} µs CPU/req`)
  }
  if (result.latency !== undefined) parts.push(`p50 at 1 connection ${result.latency.p50Ms.median.toFixed(3)} ms`)
  if (result.websocket !== undefined) parts.push(`${Math.round(result.websocket.messagesPerS.median)} WebSocket messages/s`)
  if (result.websocketWindow !== undefined) parts.push(`${Math.round(result.websocketWindow.messagesPerS.median)} with ${result.websocketWindow.window} in flight`)
  for (const rate of result.openLoop?.rates ?? []) parts.push(`open loop ${rate.offeredRps} req/s: p50 ${rate.p50Ms.median.toFixed(3)} ms, p99 ${rate.p99Ms.median.toFixed(2)} ms${rate.held ? '' : ' (rate not held)'}`)
  if (result.stream !== undefined) parts.push(`stream ${result.stream.mibPerS.toFixed(0)} MiB/s`)
  return parts.join(', ')
}

function withoutSelection ({ outDir: _outDir, only: _only, ...rest }: BenchSettings): Omit<BenchSettings, 'outDir' | 'only'> {
  return rest
}

async function main (): Promise<void> {
  let settings: BenchSettings
  try {
    settings = parseSettings(process.argv.slice(2))
  } catch (err) {
    if (!(err instanceof UsageError)) throw err
    log(err.message)
    process.exitCode = 2
    return
  }
  const processes = new ProcessGroup()
  const workDir = mkdtempSync(join(tmpdir(), 'podgate-bench-'))
  let keepWorkDir = false
  process.once('exit', () => { processes.killAllNow() })
  for (const signal of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) {
    process.once(signal, () => {
      log(`${signal}: stopping every benchmark process`)
      void processes.shutdown().finally(() => {
        rmSync(workDir, { recursive: true, force: true })
        process.exit(130)
      })
    })
  }
  try {
    process.exitCode = await run(settings, processes, workDir)
    keepWorkDir = process.exitCode !== 0
  } catch (err) {
    log(`bench failed: ${(err as Error).stack ?? String(err)}`)
    process.exitCode = 2
  } finally {
    await processes.stopAll()
    if (!keepWorkDir) rmSync(workDir, { recursive: true, force: true })
  }
}

await main()
