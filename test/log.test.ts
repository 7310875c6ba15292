// Logs an operator can read: nested component loggers write `component` once (a path), a
// retried failure logs its stack once per streak and then one line per attempt, and
// credentials stay redacted. Lines are checked as written, not only as JSON.parse sees them.
import { Writable } from 'node:stream'
import t, { type Test } from 'tap'
import { KubernetesEndpointSource } from '../src/discovery/kubernetes.ts'
import { componentLogger, createLogger, FailureStreaks, type Logger } from '../src/log.ts'
import { Culler } from '../src/workloads/culler.ts'
import { LeaderElector } from '../src/controller/leader.ts'
import type { Workload, Workloads } from '../src/workloads/workloads.ts'
import { FakeKubeServer } from './support/fake-kube.ts'
import { kubeConfigFor } from './support/kubeconfig.ts'
import { ManualClock } from './support/manual-clock.ts'

type Entry = Record<string, unknown>

interface Captured {
  readonly logger: Logger
  /** Every line as written. */
  readonly lines: string[]
  readonly parsed: () => Entry[]
  /** Resolves once the lines written so far satisfy `done`; checked on every line. */
  readonly until: (done: (entries: Entry[]) => boolean) => Promise<void>
}

function capture (): Captured {
  const lines: string[] = []
  const waiting = new Set<() => void>()
  const parsed = (): Entry[] => lines.map((line) => JSON.parse(line) as Entry)
  const destination = new Writable({
    write (chunk: Buffer, _encoding, callback) {
      for (const line of chunk.toString('utf8').split('\n')) if (line !== '') lines.push(line)
      for (const check of [...waiting]) check()
      callback()
    },
  })
  return {
    logger: createLogger('debug', destination),
    lines,
    parsed,
    until: (done) => new Promise((resolve) => {
      const check = (): void => {
        if (!done(parsed())) return
        waiting.delete(check)
        resolve()
      }
      waiting.add(check)
      check()
    }),
  }
}

/**
 * Keys that occur twice in one object of a JSON text. JSON.parse keeps the last silently, so
 * this reads the text itself, keeping the keys of each object it enters.
 */
function duplicateKeys (text: string): string[] {
  const duplicates: string[] = []
  let i = 0
  const space = (): void => { while (i < text.length && ' \t\r\n'.includes(text[i] as string)) i++ }
  const string = (): string => {
    const start = i++
    while (text[i] !== '"') i += text[i] === '\\' ? 2 : 1
    return JSON.parse(text.slice(start, ++i)) as string
  }
  const value = (): void => {
    space()
    if (text[i] === '{') {
      i++
      const keys = new Set<string>()
      space()
      if (text[i] === '}') { i++; return }
      for (;;) {
        space()
        const key = string()
        if (keys.has(key)) duplicates.push(key)
        keys.add(key)
        space()
        i++ // ':'
        value()
        space()
        if (text[i++] === '}') return
      }
    }
    if (text[i] === '[') {
      i++
      space()
      if (text[i] === ']') { i++; return }
      for (;;) {
        value()
        space()
        if (text[i++] === ']') return
      }
    }
    if (text[i] === '"') { string(); return }
    // A number, true, false or null.
    while (i < text.length && !',}] \t\r\n'.includes(text[i] as string)) i++
  }
  value()
  return duplicates
}

void t.test('duplicateKeys finds what JSON.parse hides, and nothing in clean lines', (t) => {
  t.same(duplicateKeys('{"component":"provisioner","component":"reconciler"}'), ['component'])
  t.same(duplicateKeys('{"a":{"b":1,"b":2},"c":[{"d":1},{"d":2}],"e":"{\\"e\\":1}"}'), ['b'])
  t.same(duplicateKeys('{"a":1,"b":[1,"x",{"a":2}],"c":{"a":3}}'), [])
  t.end()
})

void t.test('nested component loggers write one component key, their path', (t) => {
  const { logger: root, lines, parsed } = capture()
  const provisioner = componentLogger(root, 'provisioner')
  const reconciler = componentLogger(provisioner, 'reconciler')
  const informer = reconciler.child({ informer: 'Deployment' })
  const election = componentLogger(provisioner, 'leader-election', { lease: 'podgate-provisioner' })
  const worker = componentLogger(root.child({ worker: 1 }), 'spawner')
  root.info('root')
  provisioner.info('provisioner')
  reconciler.info('reconciler')
  informer.info('informer')
  election.info('election')
  worker.info('worker')
  reconciler.info({ component: 'given' }, 'a component given in the call wins, still once')
  t.same(lines.flatMap(duplicateKeys), [], 'no line repeats a key')
  t.same(parsed().map((line) => [line.msg, line.component]), [
    ['root', undefined],
    ['provisioner', 'provisioner'],
    ['reconciler', 'provisioner/reconciler'],
    ['informer', 'provisioner/reconciler'],
    ['election', 'provisioner/leader-election'],
    ['worker', 'spawner'],
    ['a component given in the call wins, still once', 'given'],
  ])
  t.match(parsed()[3], { informer: 'Deployment', service: 'podgate' }, 'other bindings are kept')
  t.match(parsed()[4], { lease: 'podgate-provisioner' })
  t.match(parsed()[5], { worker: 1 })
  t.end()
})

void t.test('credentials stay redacted in component loggers', (t) => {
  const { logger: root, lines, parsed } = capture()
  componentLogger(componentLogger(root, 'provisioner'), 'admin-api').warn({
    token: 'tok-123', secret: 'sec-456', headers: { authorization: 'Bearer abc', cookie: 'session=def' }, req: { headers: { authorization: 'Bearer ghi', cookie: 'jkl' } },
  }, 'a request')
  t.notMatch(lines.join('\n'), /tok-123|sec-456|abc|def|ghi|jkl/)
  t.match(parsed()[0], {
    component: 'provisioner/admin-api',
    token: '[redacted]',
    secret: '[redacted]',
    headers: { authorization: '[redacted]', cookie: '[redacted]' },
    req: { headers: { authorization: '[redacted]', cookie: '[redacted]' } },
  })
  t.same(duplicateKeys(lines[0] ?? ''), [])
  t.end()
})

void t.test('FailureStreaks: the first failure with its stack, then one line per attempt, then one recovery line', (t) => {
  const { logger, lines, parsed } = capture()
  const streaks = new FailureStreaks(logger, { failed: 'fetch failed; retrying', recovered: 'fetching again' })
  for (let i = 1; i <= 5; i++) t.equal(streaks.failed(new Error(`down ${i}`), { target: 'api' }), i)
  t.equal(streaks.attempts(), 5)
  t.equal(streaks.recovered({ target: 'api' }), 5)
  t.equal(streaks.recovered(), 0, 'a second success: nothing to say')
  const entries = parsed()
  t.equal(entries.length, 6)
  t.match(entries[0], { level: 40, msg: 'fetch failed; retrying', attempt: 1, target: 'api', err: { message: 'down 1', stack: /^Error: down 1\n\s+at / } })
  for (const [i, entry] of entries.slice(1, 5).entries()) {
    t.same(Object.keys(entry).filter((key) => !['level', 'time', 'service'].includes(key)).sort(), ['attempt', 'error', 'msg', 'target'])
    t.match(entry, { msg: 'fetch failed; retrying', attempt: i + 2, error: `down ${i + 2}` })
  }
  t.match(entries[5], { level: 30, msg: 'fetching again', attempts: 5, target: 'api' })
  t.equal(lines.filter((line) => line.includes('"stack"')).length, 1, 'one stack in the whole streak')

  lines.length = 0
  streaks.failed(new Error('again'))
  t.ok(lines[0]?.includes('"stack"'), 'a new streak logs its stack again')
  streaks.failed('exited (code 1)', {}, { key: 'worker 1', level: 'error' })
  t.match(parsed()[1], { level: 50, attempt: 1, error: 'exited (code 1)' }, 'keys have their own streaks; text is logged as text')
  streaks.failed(new Error('down too'), {}, { key: 'alice' })
  t.match(parsed()[2], { attempt: 1, error: 'down too' }, 'another key failing while one is: its first failure is one line too')
  t.equal(streaks.attempts('worker 1'), 1)
  t.same(streaks.keys().sort(), ['', 'alice', 'worker 1'])
  streaks.forget('worker 1')
  t.equal(streaks.recovered({}, 'worker 1'), 0, 'a forgotten streak ends without a line')
  streaks.recovered({}, 'alice')
  streaks.recovered()
  streaks.failed(new Error('later'), {}, { key: 'alice' })
  t.ok(lines[5]?.includes('"stack"'), 'once every key has recovered, the next failure shows its stack')
  t.equal(lines.length, 6)
  lines.length = 0
  const described = new FailureStreaks(logger, { failed: 'x', recovered: 'y', describe: (err) => `described ${String((err as Error).message)}` })
  described.failed(new Error('a'))
  described.failed(new Error('b'))
  t.match(parsed()[1], { error: 'described b' })
  t.end()
})

/** The checks every retried failure's lines must pass: one stack, then counted one-liners, then the recovery. */
function checkStreak (t: Test, lines: readonly string[], failed: string, recovered: string): void {
  const entries = lines.map((line) => JSON.parse(line) as Entry)
  const failures = entries.filter((entry) => entry.msg === failed)
  const recoveries = entries.filter((entry) => entry.msg === recovered)
  t.ok(failures.length >= 3, `${failures.length} failures`)
  t.same(failures.map((entry) => entry.attempt), failures.map((_, i) => i + 1), 'attempts counted 1, 2, 3 …')
  t.match(failures[0], { err: { stack: /\n\s+at / } }, 'the first failure with its stack')
  t.ok(failures.slice(1).every((entry) => entry.err === undefined && typeof entry.error === 'string' && !(entry.error).includes('\n    at ')), 'later ones: the message only')
  t.equal(lines.filter((line) => line.includes('"stack"')).length, 1, 'one stack in the whole outage')
  t.equal(recoveries.length, 1, 'one recovery line')
  t.match(recoveries[0], { level: 30, attempts: failures.length })
  t.same(lines.flatMap(duplicateKeys), [], 'no line repeats a key')
}

void t.test('an informer while the API refuses to list: one stack, then one line per retry, then one recovery line', async (t) => {
  const server = await FakeKubeServer.start({ bookmarkIntervalMs: 100 })
  t.teardown(() => server.stop())
  const lift = server.refuse(({ verb }) => verb === 'list', { status: 500 })
  const { logger, lines, until } = capture()
  const source = new KubernetesEndpointSource({ kubeConfig: kubeConfigFor(server), namespaces: ['default'], logger, backoff: { initialMs: 5, maxMs: 20 }, random: () => 0 })
  t.teardown(() => source.close())
  await source.start()
  const failed = 'watch failed; restarting the informer'
  await until((entries) => entries.filter((entry) => entry.msg === failed).length >= 4)
  lift()
  await source.synced
  await until((entries) => entries.some((entry) => entry.msg === 'informer listing and watching again'))
  checkStreak(t, lines, failed, 'informer listing and watching again')
  t.match(JSON.parse(lines[0] ?? '{}'), { component: 'endpointslice-informer', namespace: 'default' })
})

void t.test('a Lease campaign while the API fails: the same, under component provisioner/leader-election', async (t) => {
  const server = await FakeKubeServer.start({ bookmarkIntervalMs: 100 })
  t.teardown(() => server.stop())
  server.refuse(4, { status: 500 })
  const { logger, lines, parsed } = capture()
  const elector = new LeaderElector({
    kubeConfig: kubeConfigFor(server), namespace: 'default', identity: 'replica-a', logger: componentLogger(logger, 'provisioner'),
    leaseDurationMs: 1_000, renewIntervalMs: 100, retryIntervalMs: 10, renewDeadlineMs: 600,
  })
  t.teardown(() => elector.close())
  const leading = new Promise<void>((resolve) => { elector.onChange((on) => { if (on) resolve() }) })
  elector.start()
  await leading
  checkStreak(t, lines, 'lease request failed', 'lease requests answered again')
  t.ok(parsed().every((entry) => entry.component === 'provisioner/leader-election'), 'one component, the path')
  t.equal(parsed().filter((entry) => entry.msg === 'lease request failed').length, 4)
})

void t.test('idle sweeps while listing fails: the same, with the timers in the test\'s hands', async (t) => {
  const { logger, lines } = capture()
  let failuresLeft = 3
  const workloads = {
    list: () => failuresLeft-- > 0 ? Promise.reject(new Error('API unreachable')) : Promise.resolve([] as Workload[]),
    setSuspended: () => Promise.resolve(),
  } as unknown as Workloads
  const clock = new ManualClock()
  const culler = new Culler({ workloads, logger, idleTimeoutMs: 60_000, clock })
  culler.start()
  for (let sweep = 0; sweep < 4; sweep++) await clock.advance(culler.intervalMs)
  await culler.stop()
  checkStreak(t, lines, 'idle sweep failed; trying again next interval', 'idle sweep succeeded again')
})
