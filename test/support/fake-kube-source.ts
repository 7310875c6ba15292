// A KubernetesEndpointSource wired to a fake API server, with its log lines captured, for
// tests that need routing from EndpointSlices (and closed with the test).
import { Writable } from 'node:stream'
import { KubernetesEndpointSource, type KubernetesEndpointSourceOptions } from '../../src/discovery/kubernetes.ts'
import type { EndpointSnapshot, EndpointSource } from '../../src/discovery/source.ts'
import { createLogger } from '../../src/log.ts'
import { Metrics } from '../../src/metrics.ts'
import type { FakeKubeServer } from './fake-kube.ts'
import { kubeConfigFor } from './kubeconfig.ts'

interface Teardown { teardown (fn: () => unknown): void }

export interface LogLine {
  level: number
  msg: string
  [key: string]: unknown
}

export interface TestKubernetesSource {
  readonly source: KubernetesEndpointSource
  readonly metrics: Metrics
  /** Every log line the source wrote, parsed. */
  readonly logs: LogLine[]
}

/** Starts a source on `server`'s namespace `default` (unless `options.namespaces` says otherwise) with fast test timings; closed in teardown. */
export async function startKubernetesSource (
  t: Teardown,
  server: FakeKubeServer,
  options: Partial<KubernetesEndpointSourceOptions> = {},
): Promise<TestKubernetesSource> {
  const logs: LogLine[] = []
  const destination = new Writable({
    write (chunk: Buffer, _encoding, callback) {
      for (const line of chunk.toString('utf8').split('\n')) if (line !== '') logs.push(JSON.parse(line) as LogLine)
      callback()
    },
  })
  const metrics = new Metrics({ defaultMetrics: false })
  const source = new KubernetesEndpointSource({
    kubeConfig: kubeConfigFor(server),
    namespaces: ['default'],
    logger: createLogger('debug', destination),
    metrics,
    backoff: { initialMs: 20, maxMs: 200 },
    watchdogMs: 10_000,
    ...options,
  })
  t.teardown(() => source.close())
  await source.start()
  return { source, metrics, logs }
}

/** Resolves with the first snapshot (current or next) that satisfies `accept`; rejects after `timeoutMs`. */
export function waitForSnapshot (source: EndpointSource, accept: (snapshot: EndpointSnapshot) => boolean, what: string, timeoutMs = 5000): Promise<EndpointSnapshot> {
  if (accept(source.snapshot)) return Promise.resolve(source.snapshot)
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      unsubscribe()
      reject(new Error(`no snapshot with ${what} within ${timeoutMs} ms`))
    }, timeoutMs)
    const unsubscribe = source.onChange((change) => {
      if (!accept(change.snapshot)) return
      clearTimeout(timer)
      unsubscribe()
      resolve(change.snapshot)
    })
  })
}

/** The origins routed for `user` (empty when the user is not in the snapshot). */
export function originsOf (snapshot: EndpointSnapshot, user: string): string[] {
  return (snapshot.get(user) ?? []).map((e) => e.origin)
}
