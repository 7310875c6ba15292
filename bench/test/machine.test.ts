import t from 'tap'
import { backgroundShare, parseBusyTicks, waitForQuiet } from '../background-load.ts'
import { allowedCpus, planCpus } from '../machine.ts'
import { parseStat, parseStatusKb } from '../proc-stats.ts'

void t.test('allowedCpus reads ranges and single CPUs from /proc/self/status', (t) => {
  t.same(allowedCpus('Name:\tnode\nCpus_allowed_list:\t0-3,6\nMems_allowed_list:\t0\n'), [0, 1, 2, 3, 6])
  t.same(allowedCpus('Cpus_allowed_list:\t5\n'), [5])
  t.same(allowedCpus('Name:\tnode\n'), [])
  t.end()
})

void t.test('planCpus: load on the first CPU, proxy on the last, upstream between', (t) => {
  const two = planCpus([0, 1], true)
  t.same([two.load, two.proxy, two.upstream], [[0], [1], undefined])
  t.match(two.description, /load generator on CPU 0, proxy on CPU 1, upstream unpinned/)
  const four = planCpus([0, 1, 2, 3], true)
  t.same([four.load, four.proxy, four.upstream], [[0], [3], [1, 2]])
  const eight = planCpus([0, 1, 2, 3, 4, 5, 6, 7], true)
  t.same(eight.upstream, [1, 2, 3, 4, 5, 6])
  t.end()
})

void t.test('planCpus: no pinning with one CPU or without taskset, and says why', (t) => {
  const one = planCpus([0], true)
  t.equal(one.proxy, undefined)
  t.match(one.description, /only 1 CPU/)
  const noTaskset = planCpus([0, 1], false)
  t.equal(noTaskset.load, undefined)
  t.match(noTaskset.description, /taskset not found/)
  t.end()
})

void t.test('parseStat takes fields after the last parenthesis, whatever the command name holds', (t) => {
  const fields = '1234 (nginx: worker) process) S 1 1230 1230 0 -1 4194560 100 0 0 0 250 75 3 4 20 0 1 0 100 1000 200'
  t.same(parseStat(fields), { state: 'S', pgrp: 1230, utime: 250, stime: 75 })
  t.equal(parseStat('garbage'), undefined)
  t.equal(parseStat('1 (x) S 1'), undefined)
  t.end()
})

void t.test('parseStatusKb reads one kB field', (t) => {
  const status = 'Name:\tnode\nVmHWM:\t  90000 kB\nVmRSS:\t   45678 kB\n'
  t.equal(parseStatusKb(status, 'VmRSS'), 45678)
  t.equal(parseStatusKb(status, 'VmHWM'), 90000)
  t.equal(parseStatusKb(status, 'VmSwap'), undefined)
  t.end()
})

void t.test('background load: busy ticks from /proc/stat, minus our own, as a share of the CPUs', (t) => {
  t.equal(parseBusyTicks('cpu  100 5 50 9000 40 1 2 3 0 0\ncpu0 50 2 25 4500 20 0 1 1 0 0\n'), 161)
  t.throws(() => parseBusyTicks('intr 1 2 3\n'), /no cpu line/)
  // 10 s on 2 CPUs at 100 ticks/s = 2000 ticks; others used 700 - 200 = 500
  t.equal(backgroundShare({ machineTicks: 1000, ownTicks: 100 }, { machineTicks: 1700, ownTicks: 300 }, 10, 2, 100), 0.25)
  t.equal(backgroundShare({ machineTicks: 0, ownTicks: 0 }, { machineTicks: 10, ownTicks: 50 }, 10, 2, 100), 0, 'never negative')
  t.end()
})

void t.test('waitForQuiet returns as soon as the machine is quiet, and gives up after its limit', async (t) => {
  // 2 CPUs at 100 ticks/s over 2 s samples = 400 ticks available per sample
  const busyTicks = [0, 300, 300, 340, 340, 360]
  let reads = 0
  const delays: number[] = []
  const options = { maxWaitS: 10, threshold: 0.1, sampleS: 2, cpus: 2, ticksPerSecond: 100, delay: async (ms: number) => { delays.push(ms); await Promise.resolve() } }
  const quiet = await waitForQuiet({ ...options, readMachineTicks: () => busyTicks[reads++] ?? 360 })
  t.equal(quiet, 0.05, 'third sample: 20 of 400 ticks')
  t.same(delays, [2000, 2000, 2000])
  const busy = await waitForQuiet({ ...options, readMachineTicks: () => (reads++) * 200 })
  t.equal(busy, 0.5)
  t.equal(delays.length, 3 + 5, 'at most maxWaitS / sampleS samples')
})
