import { readFileSync } from 'node:fs'
import { setTimeout as sleep } from 'node:timers/promises'
import t from 'tap'
import { sampleGroup } from '../proc-stats.ts'
import { ProcessGroup } from '../processes.ts'

const node = process.execPath

/**
 * Reads `read()` until `done` holds or 10 s pass, and returns the last value read: a state
 * the kernel reaches when the process is next scheduled, which on a loaded machine is late.
 */
async function eventually<T> (read: () => T, done: (value: T) => boolean): Promise<T> {
  const deadline = Date.now() + 10_000
  let value = read()
  while (!done(value) && Date.now() < deadline) {
    await sleep(20)
    value = read()
  }
  return value
}

void t.test('stopAll ends every member of every child group, including grandchildren', async (t) => {
  const root = new ProcessGroup()
  t.teardown(async () => { await root.stopAll() })
  const child = root.child()
  const shell = child.spawn('shell', 'sh', ['-c', 'sleep 30 & sleep 30 & wait'])
  t.ok((await eventually(() => sampleGroup(shell.pid).processes, (n) => n >= 3)) >= 3, 'the shell and both sleeps share its process group')
  await root.stopAll()
  t.equal(sampleGroup(shell.pid).processes, 0, 'nothing of the group is left')
  t.notOk(shell.running)
})

void t.test('jsonLine returns the value of the first JSON line holding the key, after other output', async (t) => {
  const group = new ProcessGroup()
  t.teardown(async () => { await group.stopAll() })
  const server = group.spawn('server', node, ['-e', 'console.log("starting"); console.log(JSON.stringify({ other: 1 })); console.log(JSON.stringify({ listening: { port: 1234 } })); setTimeout(() => {}, 30000)'])
  t.same(await server.jsonLine('listening', 5000), { port: 1234 })
})

void t.test('jsonLine fails with the output when the process exits first', async (t) => {
  const group = new ProcessGroup()
  t.teardown(async () => { await group.stopAll() })
  const broken = group.spawn('broken', node, ['-e', 'console.error("bad config: PORT"); process.exit(3)'])
  await t.rejects(broken.jsonLine('listening', 5000), { message: /broken exited before printing "listening":\nbad config: PORT/ })
})

void t.test('result parses the last JSON line, and reports a failing exit with its output', async (t) => {
  const group = new ProcessGroup()
  t.teardown(async () => { await group.stopAll() })
  const good = group.spawn('good', node, ['-e', 'console.log("warming up"); console.log(JSON.stringify({ rps: 5 }))'])
  t.same(await good.result(5000), { rps: 5 })
  const bad = group.spawn('bad', node, ['-e', 'console.log(JSON.stringify({ rps: 5 })); console.error("boom"); process.exit(1)'])
  await t.rejects(bad.result(5000), { message: /bad exited with 1:\nboom/ })
})

void t.test('finished stops a process that runs past its time limit', async (t) => {
  const group = new ProcessGroup()
  t.teardown(async () => { await group.stopAll() })
  const slow = group.spawn('slow', 'sleep', ['30'])
  await t.rejects(slow.finished(200), { message: 'slow: still running after 200 ms' })
  t.notOk(slow.running)
})

void t.test('a command that does not exist fails to spawn with its name, and leaves nothing to stop', async (t) => {
  const group = new ProcessGroup()
  t.throws(() => group.spawn('missing', '/nonexistent/program', []), { message: /missing: failed to start/ })
  await group.stopAll()
})

void t.test('cpus pins the process with taskset', async (t) => {
  const group = new ProcessGroup()
  t.teardown(async () => { await group.stopAll() })
  const pinned = group.spawn('pinned', 'sleep', ['30'], { cpus: [0] })
  const allowed = (): string => readFileSync(`/proc/${pinned.pid}/status`, 'utf8')
  t.match(await eventually(allowed, (status) => /^Cpus_allowed_list:\s+0$/m.test(status)), /^Cpus_allowed_list:\s+0$/m)
})

void t.test('sampleGroup reads the CPU time and memory a process group used', async (t) => {
  const group = new ProcessGroup()
  t.teardown(async () => { await group.stopAll() })
  // 300 ms of its own CPU time (not wall time: on a loaded machine it gets less CPU per
  // second), then idle so it is still there to be sampled.
  const busy = group.spawn('busy', node, ['-e', 'const s = process.cpuUsage(); for (;;) { const u = process.cpuUsage(s); if (u.user + u.system >= 300000) break } setTimeout(() => {}, 30000)'])
  const sample = await eventually(() => sampleGroup(busy.pid), (s) => s.cpuTicks >= 20)
  t.equal(sample.processes, 1)
  t.ok(sample.cpuTicks >= 20, `at least 0.2 s of CPU in ticks, got ${sample.cpuTicks}`)
  t.ok(sample.rssKb > 10_000, `a Node process holds more than 10 MB, got ${sample.rssKb} KiB`)
  t.ok(sample.peakRssKb >= sample.rssKb)
})

void t.test('after shutdown no group starts anything new', async (t) => {
  const root = new ProcessGroup()
  const child = root.child()
  const running = child.spawn('sleeper', 'sleep', ['30'])
  await root.shutdown()
  t.notOk(running.running)
  t.throws(() => child.spawn('late', 'sleep', ['30']), { message: 'late: not started, the benchmark is shutting down' })
})

void t.test('pause freezes every member, resume lets it run, and a paused group still stops', async (t) => {
  const group = new ProcessGroup()
  t.teardown(() => group.stopAll())
  const child = group.spawn('sleeper', 'sleep', ['30'])
  const state = (): string => /^\d+ \(.*\) (\S)/.exec(readFileSync(`/proc/${child.pid}/stat`, 'utf8'))?.[1] ?? '?'
  await eventually(state, (s) => s === 'S')
  group.pause()
  t.equal(await eventually(state, (s) => s === 'T'), 'T', 'stopped')
  group.resume()
  t.equal(await eventually(state, (s) => s === 'S'), 'S', 'running (sleeping) again')
  group.pause()
  await group.stopAll()
  t.equal(child.running, false, 'SIGTERM reached a paused process')
})
