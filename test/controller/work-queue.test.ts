// The reconciler's work queue (dedup, one reconcile per key at a time, per-key backoff) and
// how API failures are classified for retry.
import { ApiException } from '@kubernetes/client-node'
import t from 'tap'
import { backoffDelay } from '../../src/kube/informer.ts'
import { apiErrorMessage, apiStatus, isRetryable, retryAfterMs } from '../../src/kube/api.ts'
import { WorkQueue } from '../../src/controller/work-queue.ts'
import { ManualClock } from '../support/manual-clock.ts'

function deferred (): { promise: Promise<void>, resolve: () => void, reject: (err: unknown) => void } {
  return Promise.withResolvers<void>()
}

/** The delays of the timers waiting on `clock`, soonest first. */
function delays (clock: ManualClock): number[] {
  return clock.timers().map((timer) => timer.delayMs)
}

void t.test('a key queued many times is processed once', async (t) => {
  const seen: string[] = []
  const queue = new WorkQueue({ process: (key) => { seen.push(key); return Promise.resolve() } })
  for (let i = 0; i < 20; i++) queue.add('user-a')
  queue.add('user-b')
  t.equal(queue.depth, 2, 'nothing runs before start')
  queue.start()
  await queue.whenIdle()
  t.same(seen, ['user-a', 'user-b'])
  await queue.close()
})

void t.test('a key added while it is processed runs again afterwards, never concurrently', async (t) => {
  let running = 0
  let maxRunning = 0
  const gates = [deferred(), deferred()]
  let calls = 0
  const queue = new WorkQueue({
    process: async () => {
      running++
      maxRunning = Math.max(maxRunning, running)
      const gate = gates[calls++]
      await gate?.promise
      running--
    },
    concurrency: 4,
  })
  queue.start()
  queue.add('user-a')
  await Promise.resolve()
  t.equal(queue.active, 1)
  queue.add('user-a')
  queue.add('user-a')
  t.equal(queue.active, 1, 'the second add waits for the first run')
  gates[0]?.resolve()
  await new Promise((resolve) => setImmediate(resolve))
  t.equal(calls, 2, 'processed again once (two adds while running count once)')
  gates[1]?.resolve()
  await queue.whenIdle()
  t.equal(maxRunning, 1)
  t.equal(calls, 2)
  await queue.close()
})

void t.test('concurrency bounds how many keys run at once', async (t) => {
  let running = 0
  let maxRunning = 0
  const queue = new WorkQueue({
    process: async () => {
      running++
      maxRunning = Math.max(maxRunning, running)
      await new Promise((resolve) => setTimeout(resolve, 5))
      running--
    },
    concurrency: 3,
  })
  for (let i = 0; i < 20; i++) queue.add(`user-${i}`)
  queue.start()
  await queue.whenIdle()
  t.equal(maxRunning, 3)
  await queue.close()
  t.throws(() => new WorkQueue({ process: async () => {}, concurrency: 0 }), /concurrency must be a positive integer/)
})

void t.test('failures retry with per-key exponential backoff; success resets it', async (t) => {
  const clock = new ManualClock()
  const backoff = { initialMs: 100, maxMs: 1000 }
  let failuresLeft = 3
  let calls = 0
  const errors: Array<[string, number, number]> = []
  const queue = new WorkQueue({
    process: () => {
      calls++
      return failuresLeft-- > 0 ? Promise.reject(new Error('boom')) : Promise.resolve()
    },
    backoff,
    random: () => 1,
    clock,
    onError: (key, _err, attempt, delayMs) => { errors.push([key, attempt, delayMs]) },
  })
  queue.start()
  queue.add('user-a')
  const waited: number[] = []
  for (let round = 0; round < 3; round++) {
    await queue.whenIdle()
    t.equal(queue.retrying, 1, `after failure ${round + 1} a retry is scheduled`)
    const [delay = Number.NaN] = delays(clock)
    waited.push(delay)
    await clock.advance(delay - 1)
    t.equal(calls, round + 1, `failure ${round + 1}: no retry before its delay`)
    await clock.advance(1)
  }
  await queue.whenIdle()
  t.equal(calls, 4)
  t.same(waited, [0, 1, 2].map((attempt) => backoffDelay(attempt, backoff, () => 1)), 'delays double per attempt')
  t.same(errors.map(([key, attempt]) => [key, attempt]), [['user-a', 0], ['user-a', 1], ['user-a', 2]])
  t.equal(queue.retrying, 0)
  await queue.close()
})

void t.test('retryDelay overrides the backoff (Retry-After), and an event-driven success cancels the retry', async (t) => {
  const clock = new ManualClock()
  let fail = true
  let calls = 0
  const queue = new WorkQueue({
    process: () => { calls++; return fail ? Promise.reject(new Error('throttled')) : Promise.resolve() },
    retryDelay: () => 7_000,
    clock,
  })
  queue.start()
  queue.add('user-a')
  await queue.whenIdle()
  t.same(delays(clock), [7_000])
  fail = false
  queue.add('user-a')
  await queue.whenIdle()
  t.same(delays(clock), [], 'the pending retry was cancelled')
  await clock.advance(7_000)
  t.equal(calls, 2, 'and never runs')
  await queue.close()
})

void t.test('close cancels retries, drops queued keys and waits for the running ones', async (t) => {
  const clock = new ManualClock()
  const gate = deferred()
  const seen: string[] = []
  const queue = new WorkQueue({
    process: async (key) => {
      seen.push(key)
      if (key === 'user-fail') throw new Error('x')
      if (key === 'user-slow') await gate.promise
    },
    concurrency: 1,
    clock,
  })
  queue.start()
  queue.add('user-fail')
  await queue.whenIdle()
  t.equal(clock.timers().length, 1, 'a retry is scheduled')
  queue.add('user-slow')
  queue.add('user-never')
  await new Promise((resolve) => setImmediate(resolve))
  let closed = false
  const closing = queue.close().then(() => { closed = true })
  await new Promise((resolve) => setImmediate(resolve))
  t.equal(closed, false, 'close waits for the running reconcile')
  gate.resolve()
  await closing
  t.equal(clock.timers().length, 0)
  await clock.advance(60_000)
  t.equal(seen.filter((key) => key === 'user-fail').length, 1, 'the cancelled retry never runs')
  t.notOk(seen.includes('user-never'))
  queue.add('user-late')
  await queue.whenIdle()
  t.notOk(seen.includes('user-late'), 'nothing runs after close')
})

void t.test('API failures: which retry, how long Retry-After says, and the message', (t) => {
  const status = (code: number, headers: Record<string, string> = {}): ApiException<unknown> =>
    new ApiException(code, 'x', { kind: 'Status', message: `the server said ${code}`, code }, headers)
  for (const code of [409, 429, 500, 502, 503, 504]) t.ok(isRetryable(status(code)), `${code} is retried with backoff`)
  for (const code of [400, 403, 404, 422]) t.notOk(isRetryable(status(code)), `${code} is not worth a quick retry`)
  const refused = new TypeError('fetch failed', { cause: Object.assign(new Error('connect ECONNREFUSED'), { code: 'ECONNREFUSED' }) })
  t.ok(isRetryable(refused), 'a connection error is retried')
  t.ok(isRetryable(new DOMException('The operation was aborted due to timeout', 'TimeoutError')), 'a timeout is retried')
  t.equal(apiStatus(status(409)), 409)
  t.equal(apiStatus(refused), undefined)
  t.equal(retryAfterMs(status(429, { 'retry-after': '3' })), 3000)
  t.equal(retryAfterMs(status(429, { 'retry-after': 'Wed, 01 Jan 2025 00:00:10 GMT' }), () => Date.parse('2025-01-01T00:00:00Z')), 10_000)
  t.equal(retryAfterMs(status(429)), undefined)
  t.equal(retryAfterMs(status(429, { 'retry-after': 'soon' })), undefined)
  t.equal(retryAfterMs(new Error('x')), undefined)
  t.equal(apiErrorMessage(status(422)), '422 the server said 422')
  t.equal(apiErrorMessage(refused), 'fetch failed (ECONNREFUSED)')
  t.equal(apiErrorMessage(new DOMException('aborted', 'TimeoutError')), 'timed out')
  t.end()
})
