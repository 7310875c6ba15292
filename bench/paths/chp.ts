// configurable-http-proxy 5 (JupyterHub's proxy), routed like JupyterHub does it: a
// /user/<name> prefix added through its REST API. It checks no token (the hub does that).
import { randomBytes } from 'node:crypto'
import { freePort, probe, waitUntilReady } from '../http-probe.ts'
import { bearer, hs256Key } from '../tokens.ts'
import type { BenchPath, Measure } from './types.ts'

const START_TIMEOUT_MS = 15_000

export function chpPath (measures: readonly Measure[]): BenchPath {
  return {
    id: 'chp',
    title: 'configurable-http-proxy 5, no auth',
    measures,
    async unavailable (context) {
      const chp = await context.prerequisites.chp()
      return chp.ok ? undefined : chp.reason
    },
    async start (context) {
      const chp = await context.prerequisites.chp()
      if (!chp.ok) throw new Error(chp.reason)
      const [port, apiPort] = [await freePort(), await freePort()]
      const apiToken = randomBytes(24).toString('hex')
      const proxy = context.processes.spawn('configurable-http-proxy', process.execPath, [
        chp.value.script,
        '--ip', '127.0.0.1', '--port', String(port),
        '--api-ip', '127.0.0.1', '--api-port', String(apiPort),
        '--no-include-prefix',
        '--log-level', 'warn',
      ], { cpus: context.cpus.proxy, env: { ...process.env, CONFIGPROXY_AUTH_TOKEN: apiToken } })
      const api = `http://127.0.0.1:${apiPort}/api/routes`
      const auth = { authorization: `token ${apiToken}` }
      await waitUntilReady(api, { process: proxy, timeoutMs: START_TIMEOUT_MS, headers: auth })
      const created = await probe(`${api}/user/alice`, {
        method: 'POST',
        headers: { ...auth, 'content-type': 'application/json' },
        body: JSON.stringify({ target: context.upstream.url }),
      })
      if (created.status !== 201) throw new Error(`CHP refused the route: HTTP ${created.status} ${created.body.toString()}`)
      // a token it ignores, so requests are the same size as on the other paths
      const token = await hs256Key().sign('alice', 'chp')
      return { baseUrl: `http://127.0.0.1:${port}/user/alice`, headerSets: [bearer(token)], proxyPgid: proxy.pid }
    },
  }
}
