// Every path the benchmark compares, in the order they run and appear in the tables.
import type { BenchSettings } from '../settings.ts'
import { chpPath } from './chp.ts'
import { directPath } from './direct.ts'
import { ALL_STEPS, MINIMAL_STEPS, minimalPath, WIRE_STEP } from './minimal.ts'
import { nginxPath } from './nginx.ts'
import { podgatePath, type Feature } from './podgate.ts'
import type { BenchPath } from './types.ts'

export const USERS_PATH_PREFIX = 'podgate-users-'
export const WORKERS_PATH_PREFIX = 'podgate-workers-'
export const FEATURES_PATH_PREFIX = 'podgate-feature-'

/** The cost-per-feature rows: podgate-hs256 plus one feature each, all of them, and none of them. */
export const FEATURE_ROWS: ReadonlyArray<{ readonly name: string, readonly title: string, readonly features: readonly Feature[] }> = [
  { name: 'none', title: 'per-user limits, identity, usage, access log and trace context all off', features: ['trace-off'] },
  { name: 'limits', title: 'per-user rate and concurrency limits (never reached)', features: ['limits'] },
  { name: 'identity', title: 'signed identity header (Ed25519)', features: ['identity'] },
  { name: 'usage', title: 'usage lines (PODGATE_USAGE_INTERVAL=60s)', features: ['usage'] },
  { name: 'access-log', title: 'access log on', features: ['access-log'] },
  { name: 'tracing', title: 'spans exported over OTLP/HTTP', features: ['tracing'] },
  { name: 'all', title: 'limits, identity, usage and span export together', features: ['limits', 'identity', 'usage', 'tracing'] },
]

export function benchPaths (settings: BenchSettings): BenchPath[] {
  const podgate = { alg: 'HS256', tokenCache: true, users: 1, tokens: 1, workers: 1, pinned: true } as const
  return [
    directPath,
    podgatePath({ ...podgate, id: 'podgate-hs256', title: 'podgate, HS256, token cache on', measures: ['throughput', 'latency', 'websocket', 'websocket-window', 'openloop', 'stream'] }),
    podgatePath({ ...podgate, id: 'podgate-hs256-nocache', title: 'podgate, HS256, token cache off', tokenCache: false, measures: ['throughput', 'latency'] }),
    podgatePath({ ...podgate, id: 'podgate-es256', title: 'podgate, ES256, token cache on', alg: 'ES256', measures: ['throughput', 'latency'] }),
    podgatePath({ ...podgate, id: 'podgate-auth-url', title: 'podgate, opaque token via PODGATE_AUTH_URL, verdict cached (warm)', authUrl: true, measures: ['throughput', 'latency'] }),
    nginxPath('keepalive', ['throughput', 'latency', 'websocket', 'websocket-window']),
    nginxPath('lua-variable', ['throughput', 'latency']),
    nginxPath('lua-keepalive', ['throughput', 'latency']),
    // the open-loop reference: its saturation rate sets the offered rates (open-loop.ts)
    nginxPath('lua-cached', ['throughput', 'latency', 'openloop']),
    nginxPath('auth-request', ['throughput', 'latency']),
    chpPath(['throughput', 'latency', 'openloop']),
    // in the open loop too: what the Node floor itself does at the rates podgate is held to
    minimalPath(['throughput', 'latency', 'openloop']),
    // The floor plus one piece of podgate each: the gap to the floor, priced piece by piece.
    ...MINIMAL_STEPS.map((step) => minimalPath(['throughput'], step)),
    minimalPath(['throughput'], ALL_STEPS),
    minimalPath(['throughput'], WIRE_STEP),
    ...settings.userCounts.map((users) => podgatePath({
      ...podgate,
      id: `${USERS_PATH_PREFIX}${users}`,
      title: `podgate, ${users.toLocaleString('en-US')} user${users === 1 ? '' : 's'} routable, 16 tokens`,
      users,
      tokens: 16,
      measures: ['throughput'],
    })),
    ...FEATURE_ROWS.map((row) => podgatePath({
      ...podgate,
      id: `${FEATURES_PATH_PREFIX}${row.name}`,
      title: `podgate, HS256, token cache on, ${row.title}`,
      features: row.features,
      measures: ['throughput'],
    })),
    // Worker scaling: the proxy may use every CPU (the load generator still has its own), so
    // one worker and two compete for the same cores the same way.
    ...[1, 2].map((workers) => podgatePath({
      ...podgate,
      id: `${WORKERS_PATH_PREFIX}${workers}`,
      title: `podgate, ${workers} gateway worker${workers === 1 ? '' : 's'}, proxy not pinned`,
      workers,
      pinned: false,
      measures: ['throughput'],
    })),
  ]
}
