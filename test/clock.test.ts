// The one clock: systemClock keeps Node's ref/unref semantics, and the ManualClock tests rely on
// runs timers in order, at their own time, with promise callbacks settled between them.
import t from 'tap'
import { systemClock } from '../src/clock.ts'
import { MANUAL_CLOCK_START, ManualClock } from './support/manual-clock.ts'

void t.test('systemClock: wall time, Node timers, unref only when asked', async (t) => {
  const before = Date.now()
  t.ok(systemClock.now() >= before && systemClock.now() <= Date.now())
  const fired = await new Promise<boolean>((resolve) => { systemClock.setTimeout(() => { resolve(true) }, 1) })
  t.equal(fired, true)
  const ref = systemClock.setTimeout(() => {}, 60_000) as NodeJS.Timeout
  const unref = systemClock.setTimeout(() => {}, 60_000, { unref: true }) as NodeJS.Timeout
  const every = systemClock.setInterval(() => {}, 60_000, { unref: true }) as NodeJS.Timeout
  t.equal(ref.hasRef(), true, 'ref\'d by default, as Node\'s timers are')
  t.equal(unref.hasRef(), false)
  t.equal(every.hasRef(), false)
  systemClock.clearTimeout(ref)
  systemClock.clearTimeout(unref)
  systemClock.clearInterval(every)
  systemClock.clearTimeout(undefined)
})

void t.test('ManualClock: time moves only by advance, timers run in due order at their own time', async (t) => {
  const clock = new ManualClock()
  t.equal(clock.now(), MANUAL_CLOCK_START)
  const ran: Array<[string, number]> = []
  const at = (name: string) => () => { ran.push([name, clock.now() - MANUAL_CLOCK_START]) }
  clock.setTimeout(at('c'), 300)
  clock.setTimeout(at('a'), 100)
  clock.setTimeout(at('b'), 100)
  const cancelled = clock.setTimeout(at('never'), 200)
  clock.clearTimeout(cancelled)
  t.same(clock.timers().map((timer) => timer.delayMs), [100, 100, 300])
  await clock.advance(99)
  t.same(ran, [], 'nothing is due yet')
  await clock.advance(1)
  t.same(ran, [['a', 100], ['b', 100]], 'same due time: scheduling order')
  await clock.advance(10_000)
  t.same(ran, [['a', 100], ['b', 100], ['c', 300]])
  t.equal(clock.now() - MANUAL_CLOCK_START, 10_100, 'time ends at the target')
  t.equal(clock.timers().length, 0)
})

void t.test('ManualClock: timers scheduled by timers, promise callbacks between timers, intervals', async (t) => {
  const clock = new ManualClock()
  const ran: string[] = []
  clock.setTimeout(() => {
    ran.push('first')
    void Promise.resolve().then(() => Promise.resolve()).then(() => {
      ran.push('first, after two promise hops')
      clock.setTimeout(() => { ran.push('scheduled by a promise of the first') }, 0)
    })
  }, 10)
  clock.setTimeout(() => { ran.push('second') }, 10)
  await clock.advance(10)
  t.same(ran, ['first', 'first, after two promise hops', 'second'], 'a timer\'s promise chain settles before the next timer runs')
  await clock.advance(1)
  t.same(ran.at(-1), 'scheduled by a promise of the first', 'a delay of 0 is 1 ms, as in Node')

  let ticks = 0
  const every = clock.setInterval(() => { ticks++ }, 250, { unref: true })
  t.same(clock.timers(), [{ delayMs: 250, unref: true, everyMs: 250 }])
  await clock.advance(1_000)
  t.equal(ticks, 4)
  clock.clearInterval(every)
  await clock.advance(1_000)
  t.equal(ticks, 4, 'cleared')

  clock.setTimeout(function again () { clock.setTimeout(again, 0) }, 0)
  await t.rejects(clock.advance(1_000_000), /keeps rescheduling itself/, 'a runaway timer fails the test instead of hanging it')
  await t.rejects(clock.advance(-1), /advance: expected/)
})
