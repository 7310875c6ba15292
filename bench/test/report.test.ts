import t from 'tap'
import type { PathResult } from '../measure.ts'
import { toMarkdown, type BenchReport } from '../report.ts'
import { parseSettings } from '../settings.ts'
import { summarize } from '../stats.ts'

function path (id: string, rps: number[]): PathResult {
  const runs = rps.map((value) => ({ rps: value, p50Ms: 1, p99Ms: 2, requests: value, cpuUsPerRequest: 10, rssKb: 1000, backgroundPct: 0 }))
  return {
    id,
    title: id,
    status: 'ok',
    idleRssKb: 1000,
    throughput: { connections: 64, durationS: 3, runs, rps: summarize(rps), p50Ms: summarize([1]), p99Ms: summarize([2]), cpuUsPerRequest: summarize([10]), rssKb: 1000, backgroundPct: 0 },
  }
}

function report (paths: PathResult[]): BenchReport {
  const { outDir: _outDir, only: _only, ...settings } = parseSettings([])
  return {
    date: '2026-11-22T00:00:00.000Z',
    quick: false,
    machine: { cpuModel: 'test', cpus: 2, allowedCpus: [0, 1], memoryGiB: 1, node: 'v24', kernel: '6' },
    pinning: 'test',
    upstream: 'test',
    tools: {},
    settings,
    elapsedS: 1,
    backgroundCpuPct: 0,
    paths,
    goals: [],
  }
}

void t.test('runs of a path far apart mark the machine unsteady, close together steady', (t) => {
  t.match(toMarkdown(report([path('a', [100, 104, 102]), path('b', [50, 51, 52])])), /Runs of a path were \d+% apart .*: a steady machine/)
  t.match(toMarkdown(report([path('a', [100, 160, 70]), path('b', [50, 90, 40])])), /\*\*Unsteady machine\*\*: runs of the same path were 9\d% apart/)
  t.end()
})
