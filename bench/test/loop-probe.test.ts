// The loop probe in a real process: its window is what lies between two SIGUSR2, a stall inside
// it shows as the delay's max, stalls before and after do not, and garbage collections are counted.
import { execFile } from 'node:child_process'
import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { promisify } from 'node:util'
import t from 'tap'
import type { LoopProbeResult } from '../loop-probe.ts'

const probe = join(import.meta.dirname, '..', 'loop-probe.ts')

// Stalls of 300 ms outside the window, one of 60 ms inside, and garbage made inside.
const SCRIPT = `
const wait = (ms) => new Promise((resolve) => setTimeout(resolve, ms))
const stall = (ms) => { const end = performance.now() + ms; while (performance.now() < end); }
await wait(20)
stall(300)
process.kill(process.pid, 'SIGUSR2')
await wait(30)
let kept = 0
for (let i = 0; i < 40; i++) {
  for (let j = 0; j < 20000; j++) kept += [i, j, { i, j }].length
  await wait(1)
}
stall(60)
await wait(30)
process.kill(process.pid, 'SIGUSR2')
await wait(30)
stall(300)
if (kept === 0) process.exitCode = 1
`

void t.test('the probe measures between the two SIGUSR2 only, and writes one file on exit', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'loop-probe-'))
  t.teardown(() => { rmSync(dir, { recursive: true, force: true }) })
  await promisify(execFile)(process.execPath, ['--import', probe, '--input-type=module', '-e', SCRIPT], { env: { ...process.env, LOOP_PROBE_DIR: dir }, timeout: 30_000 })
  const files = readdirSync(dir)
  t.equal(files.length, 1)
  const result = JSON.parse(readFileSync(join(dir, files[0]!), 'utf8')) as LoopProbeResult
  t.ok(result.delayMs.max >= 50, `the 60 ms stall inside the window is its longest delay (${result.delayMs.max} ms)`)
  t.ok(result.delayMs.max < 250, `the 300 ms stalls before and after it are not counted (${result.delayMs.max} ms)`)
  t.ok(result.delayMs.p50 < 5, 'most ticks of the window were on time')
  t.ok(result.gc.scavenge.count > 0, 'the garbage made inside the window was collected and counted')
  t.ok(result.windowMs >= 100 && result.windowMs < 2000, `the window is what lay between the signals (${result.windowMs} ms)`)
})

void t.test('without LOOP_PROBE_DIR the probe does nothing', async (t) => {
  const cwd = mkdtempSync(join(tmpdir(), 'loop-probe-off-'))
  t.teardown(() => { rmSync(cwd, { recursive: true, force: true }) })
  const env = { ...process.env }
  delete env.LOOP_PROBE_DIR
  const { stdout } = await promisify(execFile)(process.execPath, ['--import', probe, '--input-type=module', '-e', 'setTimeout(() => { process.stdout.write("done") }, 20)'], { cwd, env, timeout: 30_000 })
  t.equal(stdout, 'done')
  t.same(readdirSync(cwd), [], 'nothing written, not even under a path named "undefined"')
})
