import { fork, spawn, type ChildProcess } from 'node:child_process'
import { once } from 'node:events'
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
import { fileURLToPath } from 'node:url'
import t, { type Test } from 'tap'
import { importCost } from '../memory-imports.ts'
import { PROBE_DIR_VARIABLE, PROBE_IMPORT, readSamples, takeSamples } from '../memory-probe.ts'

const REPO = fileURLToPath(new URL('../..', import.meta.url))
const WAIT = 'setTimeout(() => {}, 30000)'

function scratch (t: Test): string {
  const dir = mkdtempSync(join(tmpdir(), 'podgate-memory-probe-'))
  t.teardown(() => { rmSync(dir, { recursive: true, force: true }) })
  return dir
}

function stopAtTeardown (t: Test, child: ChildProcess): void {
  t.teardown(async () => {
    if (child.exitCode !== null || child.signalCode !== null) return
    child.kill('SIGKILL')
    await once(child, 'exit')
  })
}

/** Waits (at most 10 s) until `count` probed processes have written their first sample. */
async function probed (dir: string, count: number): Promise<void> {
  for (let i = 0; i < 400 && readSamples(dir).size < count; i++) await sleep(25)
}

void t.test('a probed process answers each signal with a new sample of its memory', async (t) => {
  const dir = scratch(t)
  const child = spawn(process.execPath, [PROBE_IMPORT, '-e', `globalThis.kept = Buffer.alloc(8 * 1024 * 1024, 1); ${WAIT}`], { env: { PATH: process.env.PATH, [PROBE_DIR_VARIABLE]: dir }, stdio: 'ignore' })
  stopAtTeardown(t, child)
  await probed(dir, 1)
  const [first] = await takeSamples(dir)
  const [second] = await takeSamples(dir)
  t.equal(first?.pid, child.pid)
  t.equal(first?.role, 'main')
  t.equal(second?.seq, (first?.seq ?? 0) + 1, 'one more sample per signal')
  t.ok(first !== undefined && first.rssKb > first.anonKb && first.anonKb > 0 && first.privateKb > 0 && first.peakRssKb >= first.rssKb, 'RSS, anonymous, private and peak from /proc')
  t.ok(first !== undefined && first.arrayBuffers >= 8 * 1024 * 1024, 'the 8 MiB buffer is in arrayBuffers')
  t.ok(first !== undefined && (first.spaces.new_space ?? 0) > 0 && (first.spaces.old_space ?? 0) > 0, 'V8 heap spaces by name')
  t.equal(typeof first?.gc.minor, 'number')
})

void t.test('a forked gateway worker says so, and a process that exited is left out', async (t) => {
  const dir = scratch(t)
  // The probe knows a worker by its script's path (src/workers/worker.ts, dist/workers/worker.js) and its IPC channel.
  const script = join(dir, 'workers', 'worker.js')
  mkdirSync(join(dir, 'workers'))
  writeFileSync(script, WAIT)
  const env = { PATH: process.env.PATH, [PROBE_DIR_VARIABLE]: dir }
  const worker = fork(script, [], { env, execArgv: [PROBE_IMPORT], stdio: 'ignore' })
  stopAtTeardown(t, worker)
  const gone = spawn(process.execPath, [PROBE_IMPORT, '-e', ''], { env, stdio: 'ignore' })
  await once(gone, 'exit')
  await probed(dir, 2)
  const samples = await takeSamples(dir)
  t.same(samples.map((sample) => [sample.pid, sample.role]), [[worker.pid, 'worker']])
})

void t.test('import cost: a package grows the heap of a fresh process, and nothing grows without one', async (t) => {
  const none = await importCost(REPO, [])
  const yaml = await importCost(REPO, ['yaml'])
  t.ok(Math.abs(none.after.heapUsed - none.before.heapUsed) < 256 * 1024, 'nothing imported: the heap stays within 256 KiB')
  t.ok(yaml.after.heapUsed - yaml.before.heapUsed > 256 * 1024, 'yaml: more than 256 KiB of heap')
  t.ok(yaml.after.rssKb > yaml.before.rssKb)
  const onTop = await importCost(REPO, ['yaml'], ['yaml'])
  t.ok(onTop.after.heapUsed - onTop.before.heapUsed < 256 * 1024, 'already imported: nothing more')
})
