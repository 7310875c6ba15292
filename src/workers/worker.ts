// A gateway worker: forked by `podgate serve` when PODGATE_WORKERS > 1. It serves the
// gateway port (SO_REUSEPORT, the kernel spreads connections over the workers; bound only
// once the primary says no other process listens there) from the primary's routing
// snapshot; spawning, activity and metrics go through the primary.
import { startPodgate } from '../app.ts'
import { createCredentialVerifier } from '../auth/credential-verifier.ts'
import { loadConfig } from '../config.ts'
import type { Endpoint } from '../discovery/source.ts'
import { DrainingError } from '../errors.ts'
import { ListenError } from '../listen.ts'
import { createLogger, type Logger } from '../log.ts'
import { Metrics } from '../metrics.ts'
import { fromWireEndpoints, fromWireError, type FromWorker, type ToWorker, type WorkerInit } from './messages.ts'
import { RelayedSource } from './relayed-source.ts'
import { applyGatewayV8Flags } from './worker-options.ts'

/** How long a routed user waits, at most, to be sent to the primary: the IPC hop's latency, not a throttle. */
const ACTIVITY_SEND_MS = 1000

type Send = (message: FromWorker) => void

/** Answers to this worker's questions to the primary, matched by id. */
class PrimaryRequests {
  readonly #send: Send
  readonly #pending = new Map<number, PromiseWithResolvers<readonly Endpoint[]>>()
  #nextId = 1

  constructor (send: Send) { this.#send = send }

  missing (user: string, accept: string | undefined, namespace: string | undefined): Promise<readonly Endpoint[]> {
    const id = this.#nextId++
    const waiting = Promise.withResolvers<readonly Endpoint[]>()
    this.#pending.set(id, waiting)
    this.#send({ type: 'missing', id, user, accept, ...(namespace === undefined ? {} : { namespace }) })
    return waiting.promise
  }

  answer (message: Extract<ToWorker, { type: 'endpoints' }>): void {
    const waiting = this.#pending.get(message.id)
    if (waiting === undefined) return
    this.#pending.delete(message.id)
    if (message.error !== undefined) waiting.reject(fromWireError(message.error))
    else waiting.resolve(fromWireEndpoints(message.endpoints ?? []))
  }

  /** The worker stops: nobody will answer (a waiting request gets 503 with Retry-After). */
  abandon (err: Error): void {
    for (const waiting of this.#pending.values()) waiting.reject(err)
    this.#pending.clear()
  }
}

/** The primary's leave to bind the gateway port, asked for just before binding it. */
class BindPermission {
  readonly #send: Send
  #waiting: PromiseWithResolvers<void> | undefined

  constructor (send: Send) { this.#send = send }

  readonly ask = (): Promise<void> => {
    this.#waiting = Promise.withResolvers<void>()
    this.#send({ type: 'bind' })
    return this.#waiting.promise
  }

  answer (message: Extract<ToWorker, { type: 'bind' }>): void {
    if (message.refused === undefined) this.#waiting?.resolve()
    else this.#waiting?.reject(new ListenError(message.refused))
    this.#waiting = undefined
  }

  /** The worker stops before it was answered: its start fails and closes what it opened. */
  abandon (): void {
    this.#waiting?.reject(new DrainingError('gateway worker shutting down'))
    this.#waiting = undefined
  }
}

/**
 * Transport only: sends the set of users routed since the last send, every user every time.
 * The primary's ActivityRecorder is the one throttle; this keeps no state across sends.
 */
class ActivityBatch {
  readonly #users = new Set<string>()
  readonly #timer: NodeJS.Timeout
  readonly #send: Send

  /** `throttleMs`: the recorder's interval; a send never waits longer than that. */
  constructor (send: Send, throttleMs: number | undefined) {
    this.#send = send
    this.#timer = setInterval(() => { this.flush() }, Math.min(ACTIVITY_SEND_MS, throttleMs ?? ACTIVITY_SEND_MS)).unref()
  }

  readonly record = (user: string): void => { this.#users.add(user) }

  flush (): void {
    if (this.#users.size === 0) return
    this.#send({ type: 'activity', users: [...this.#users] })
    this.#users.clear()
  }

  close (): void {
    clearInterval(this.#timer)
    this.flush()
  }
}

async function runWorker (logger: Logger): Promise<void> {
  const send: Send = (message) => { if (process.connected) process.send?.(message) }
  const config = loadConfig(process.env)
  // Told to stop, or orphaned, before it started: nothing to drain.
  const exitEarly = (): never => process.exit(0)
  process.once('disconnect', exitEarly)
  // One listener from the start: whatever arrives between the snapshot and the handler's
  // set-up below is kept, in order, whenever Node happens to emit it.
  const inbox: ToWorker[] = []
  const initialized = Promise.withResolvers<WorkerInit>()
  let deliver: ((message: ToWorker) => void) | undefined = undefined
  process.on('message', (message: ToWorker) => {
    if (deliver !== undefined) deliver(message)
    else if (message.type === 'init') initialized.resolve(message)
    else if (message.type === 'drain') exitEarly()
    else inbox.push(message)
  })
  // Messages that arrive before a listener exists are dropped: ask only now.
  send({ type: 'hello' })
  const init = await initialized.promise
  process.off('disconnect', exitEarly)
  const source = new RelayedSource(init.routes, init.synced)
  const requests = new PrimaryRequests(send)
  const permission = new BindPermission(send)
  const activity = init.activity ? new ActivityBatch(send, init.activityIntervalMs) : undefined
  const metrics = new Metrics()
  const verifier = createCredentialVerifier(config, { metrics, logger })
  for (const [user, notBeforeS] of init.revocations ?? []) verifier.revoke(user, notBeforeS)
  const started = startPodgate({
    config,
    source,
    verifier,
    logger,
    metrics,
    serveAdmin: false,
    reusePort: true,
    beforeListen: permission.ask,
    ...(init.missing ? { onMissing: (user: string, accept: string | undefined, namespace?: string) => requests.missing(user, accept, namespace), spawnNamespaces: init.spawnNamespaces } : {}),
    ...(activity === undefined ? {} : { onActivity: activity.record, activityIntervalMs: init.activityIntervalMs }),
  })
  let stopping = false
  const stop = (why: string): void => {
    if (stopping) return
    stopping = true
    logger.info({ why }, 'worker stopping')
    permission.abandon()
    void (async () => {
      await started.then((podgate) => podgate.close(), () => {})
      activity?.close()
      requests.abandon(new DrainingError('gateway worker shutting down'))
      // Everything is closed; exit rather than wait for a stray handle to let go.
      process.exit(0)
    })()
  }
  deliver = (message) => {
    switch (message.type) {
      case 'routes': source.apply(message.routes); break
      case 'synced': source.markSynced(); break
      case 'revoke': verifier.revoke(message.user, message.notBeforeS); break
      case 'endpoints': requests.answer(message); break
      case 'scrape':
        void metrics.registry.getMetricsAsJSON().then((json) => { send({ type: 'metrics', id: message.id, metrics: json }) })
        break
      case 'drain': stop('drain'); break
      case 'bind': permission.answer(message); break
      case 'init': break
    }
  }
  for (const message of inbox.splice(0)) deliver(message)
  // Without its primary a worker would serve a snapshot nobody updates.
  process.once('disconnect', () => { stop('primary gone') })
  // The primary coordinates shutdown; a signal sent to the whole group (Ctrl-C) drains too.
  for (const signal of ['SIGTERM', 'SIGINT'] as const) process.once(signal, () => { stop(signal) })

  // Told to stop while starting: the start fails on purpose and stop() exits.
  const podgate = await started.catch((err: unknown) => { if (stopping) return undefined; throw err })
  if (podgate !== undefined) send({ type: 'listening', port: Number(new URL(podgate.gatewayUrl).port) })
}

if (process.send === undefined) {
  process.stderr.write('podgate: this is a gateway worker; `podgate serve` starts it (PODGATE_WORKERS)\n')
  process.exit(2)
}
applyGatewayV8Flags(process.execArgv)
const index = Number(process.argv[2] ?? 0)
const logger = createLogger(loadConfig(process.env).logLevel).child({ worker: index })
runWorker(logger).catch((err: unknown) => {
  if (err instanceof ListenError) {
    // The primary reports it, in one line; no stack for a port someone else holds.
    if (process.connected) process.send?.({ type: 'cannot-listen', message: err.message } satisfies FromWorker, () => process.exit(1))
    else process.exit(1)
    return
  }
  logger.fatal({ err }, 'worker failed to start')
  process.exit(1)
})
