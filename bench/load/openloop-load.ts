// One open-loop run in its own (pinned) process: vegeta sends GETs at a constant rate, adding
// workers and connections whenever the answers are slow, so a slow proxy never slows the
// sending (as a closed loop of N connections would) and its queueing shows in the latencies.
// vegeta inherits this process's CPU pinning. Its results are read after the attack, so
// reading them takes no CPU from it. Usage: node openloop-load.ts '<OpenLoopSpec JSON>';
// prints one JSON line (OpenLoopRun).
import { spawn } from 'node:child_process'
import { once } from 'node:events'
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { createInterface } from 'node:readline'
import { OpenLoopTally, parseResultLine } from '../vegeta-results.ts'
import { parseSpec } from './spec.ts'

export interface OpenLoopSpec {
  readonly vegeta: string
  readonly url: string
  /** Requests per second, held for warmupS + durationS. */
  readonly rate: number
  readonly durationS: number
  readonly warmupS: number
  /** Requests cycle through these header sets. */
  readonly headerSets: ReadonlyArray<Record<string, string>>
  /**
   * The loopback address vegeta sends from. Go binds its ephemeral port before connecting,
   * so a port in TIME_WAIT to any destination is taken; a source address of its own gives
   * the run a whole port range, whatever other paths and their upstreams left behind.
   */
  readonly localAddress: string
}

/** A request that takes longer has failed; far beyond any healthy answer here. */
const REQUEST_TIMEOUT_S = 5
/** Bounds the connections an overloaded proxy can make vegeta open; the send lag then shows the overload. */
const MAX_WORKERS = 1024

const spec = parseSpec<OpenLoopSpec>(process.argv[2], ['vegeta', 'url', 'rate', 'durationS', 'warmupS', 'headerSets', 'localAddress'])
const dir = mkdtempSync(join(tmpdir(), 'podgate-openloop-'))

/** Runs vegeta with stdout to `onLine` (or ignored); throws with its stderr when it fails. */
async function vegeta (args: readonly string[], onLine?: (line: string) => void): Promise<void> {
  const child = spawn(spec.vegeta, args, { stdio: ['ignore', onLine === undefined ? 'ignore' : 'pipe', 'pipe'] })
  let stderr = ''
  child.stderr!.setEncoding('utf8').on('data', (chunk: string) => { stderr = (stderr + chunk).slice(-4096) })
  const closed = once(child, 'close') as Promise<[number | null]>
  if (child.stdout !== null) {
    for await (const line of createInterface({ input: child.stdout, crlfDelay: Infinity })) if (line !== '') onLine!(line)
  }
  const [code] = await closed
  if (code !== 0) throw new Error(`vegeta ${args[0] ?? ''} exited with ${String(code)}: ${stderr.trim()}`)
}

try {
  const targets = join(dir, 'targets.json')
  const results = join(dir, 'results.bin')
  const headerSets = spec.headerSets.length === 0 ? [{}] : spec.headerSets
  writeFileSync(targets, headerSets.map((headers) => JSON.stringify({
    method: 'GET',
    url: spec.url,
    header: Object.fromEntries(Object.entries(headers).map(([name, value]) => [name, [value]])),
  })).join('\n') + '\n')
  await vegeta([
    'attack',
    '-format=json', `-targets=${targets}`,
    `-rate=${spec.rate}/1s`, `-duration=${Math.round((spec.warmupS + spec.durationS) * 1000)}ms`,
    `-timeout=${REQUEST_TIMEOUT_S}s`, `-max-workers=${MAX_WORKERS}`, `-laddr=${spec.localAddress}`,
    // bodies are not kept: the check before the load already read one
    '-max-body=0', '-http2=false', `-output=${results}`,
  ])
  const tally = new OpenLoopTally({ rate: spec.rate, warmupS: spec.warmupS })
  await vegeta(['encode', '--to', 'json', results], (line) => { tally.add(parseResultLine(line)) })
  process.stdout.write(JSON.stringify(tally.summary(spec.durationS)) + '\n')
} finally {
  rmSync(dir, { recursive: true, force: true })
}
