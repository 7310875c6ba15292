// The baseline: load straight at the upstream, no proxy in between.
import { bearer, hs256Key } from '../tokens.ts'
import type { BenchPath } from './types.ts'

export const directPath: BenchPath = {
  id: 'direct',
  title: 'upstream hit directly',
  measures: ['throughput', 'latency', 'websocket', 'websocket-window', 'openloop', 'stream'],
  async start (context) {
    // the same Authorization header as the proxied paths, so requests are the same size
    const token = await hs256Key().sign('alice', 'direct')
    return { baseUrl: context.upstream.url, headerSets: [bearer(token)], proxyPgid: undefined }
  },
}
