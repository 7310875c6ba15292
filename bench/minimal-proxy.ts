// The floor of podgate's own stack, for the `node-minimal` path: node:http in, a token cache
// in front of jose, undici's dispatch out, and nothing else — no header hygiene, no metrics,
// no timeouts, no retries, no WebSocket, no draining. What podgate costs above this is the
// price of what it does beyond forwarding. `--step` adds one of podgate's own pieces to it,
// taken from src/, so each piece's cost is the difference to the floor in the same run
// (the `node-minimal-<step>` paths):
// - server-limits: the gateway server's options (idle, head and keep-alive timeouts, header
//   limits, the 1 s timeout check) and its per-connection gauge;
// - headers: podgate's upstream header list (hygiene, X-Forwarded-*, the identity header,
//   a traceparent) and its response header filter, instead of two headers and a copy;
// - checks: podgate's request check, reserved-path test, token extraction and verified-token
//   cache (lru-cache, expiry, hit counter), instead of a Map keyed by the header's tail;
// - accounting: what podgate records per request (start, upstream and end times, a `close`
//   listener, the request counter and duration histogram, outlier bookkeeping);
// - exchange: podgate's forward() itself (its response class, the endpoint pools and outlier
//   pick, the Exchange dispatch handler with its retry and client-close handling, and its
//   response header filter) in place of this file's pool and handler.
// `--step wire` is a floor of its own rather than a piece: the request headers podgate sends by
// default (X-Forwarded-For, -Proto, -Host and a traceparent) built here with fixed values, so
// their cost on the wire is told apart from the cost of podgate's code that builds them.
// Several steps at once: `--step a,b`. Usage: node bench/minimal-proxy.ts --upstream host:port --secret S [--step NAME[,NAME…]]; prints {"listening":{...}}
import { createServer, type IncomingHttpHeaders, type IncomingMessage, type ServerOptions, type ServerResponse } from 'node:http'
import { parseArgs } from 'node:util'
import { jwtVerify } from 'jose'
import { Pool, type Dispatcher } from 'undici'
import type { EndpointSource } from '../src/discovery/source.ts'
import { applyGatewayV8Flags } from '../src/workers/worker-options.ts'
import { MINIMAL_STEPS, WIRE_STEP, type MinimalStep } from './paths/minimal.ts'

const { values } = parseArgs({ options: { upstream: { type: 'string' }, secret: { type: 'string' }, step: { type: 'string' } } })
if (values.upstream === undefined || values.secret === undefined) throw new Error('usage: minimal-proxy.ts --upstream host:port --secret S [--step NAME[,NAME…]]')
const steps = new Set((values.step ?? '').split(',').filter((name) => name !== ''))
const STEP_NAMES: readonly string[] = [...MINIMAL_STEPS, WIRE_STEP]
for (const name of steps) if (!STEP_NAMES.includes(name)) throw new Error(`--step: names from ${STEP_NAMES.join(', ')}, got ${name}`)
const step = (name: MinimalStep): boolean => steps.has(name)
const wire = steps.has(WIRE_STEP)
/** A traceparent of the length podgate starts a trace with: the wire step's one fixed value. */
const TRACEPARENT = '00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01'
// The V8 flags every gateway process sets, as the Node options (bench/paths/minimal.ts): the floor runs on podgate's runtime.
applyGatewayV8Flags(process.execArgv)
const secret = new TextEncoder().encode(values.secret)
const origin = `http://${values.upstream}`
const pool = new Pool(origin, { connections: 256, pipelining: 1 })
const users = new Map<string, string>()

const [upstreamHost, upstreamPort] = values.upstream.split(':')
const endpoints = [{ address: upstreamHost ?? '', port: Number(upstreamPort), origin }]
// podgate's pieces with its defaults, loaded only with one of its steps: the floor itself imports nothing of podgate's.
const parts = steps.size === 0 || (wire && steps.size === 1) ? undefined : await podgateParts(values.secret)
const verifier = step('checks') ? parts!.verifier : undefined

async function podgateParts (jwtSecret: string) {
  const [{ extractToken }, { isReservedPath }, { createTokenVerifier }, { loadConfig }, { downstreamHeaders, upstreamHeaders }, { EndpointOutliers }, { checkRequest }, { Metrics }, { TraceContextPropagator }, { forward: podgateForward }, { EndpointPools }, { GatewayResponse }] = await Promise.all([
    import('../src/auth/extract.ts'), import('../src/auth/oidc-paths.ts'), import('../src/auth/verifier.ts'), import('../src/config.ts'), import('../src/gateway/headers.ts'),
    import('../src/gateway/outliers.ts'), import('../src/gateway/request-check.ts'), import('../src/metrics.ts'), import('../src/tracing/context.ts'),
    import('../src/gateway/forward.ts'), import('../src/gateway/pools.ts'), import('../src/gateway/response.ts'),
  ])
  const config = loadConfig({ PODGATE_JWT_SECRET: jwtSecret })
  const metrics = new Metrics({ defaultMetrics: false })
  // One user routed to the upstream, as podgate's route table would have it.
  const source: EndpointSource = {
    snapshot: new Map([['alice', endpoints]]), routableUsers: 1, endpointCount: 1, synced: Promise.resolve(), isSynced: true,
    onChange: () => () => {}, start: () => Promise.resolve(), close: () => Promise.resolve(),
  }
  const gateway = config.gateway
  const target = { pools: new EndpointPools(source, { ...gateway, registry: metrics.registry }), metrics, turn: 0 }
  return {
    config, metrics, extractToken, isReservedPath, checkRequest, downstreamHeaders, upstreamHeaders, GatewayResponse,
    forward: (req: IncomingMessage, res: ServerResponse, headers: string[]) => { podgateForward(req, res as InstanceType<typeof GatewayResponse>, endpoints, headers, target) },
    verifier: createTokenVerifier(config.auth, { metrics }),
    forwarding: { userHeader: config.gateway.userHeader, trustProxy: false, cookieName: config.auth.cookieName, forwardCredentials: false },
    propagator: new TraceContextPropagator('continue'),
    outliers: new EndpointOutliers(),
  }
}

class Forward implements Dispatcher.DispatchHandler {
  readonly #res: ServerResponse
  upstreamStart = 0
  upstreamEnd = 0
  constructor (res: ServerResponse) { this.#res = res }
  onRequestStart (): void {}
  onResponseStart (_controller: Dispatcher.DispatchController, status: number, headers: IncomingHttpHeaders): void {
    if (step('accounting')) parts!.outliers.succeeded(origin)
    if (step('headers')) {
      this.#res.writeHead(status, parts!.downstreamHeaders(headers))
      return
    }
    const out = { ...headers }
    delete out.connection
    delete out['keep-alive']
    this.#res.writeHead(status, out)
  }

  onResponseData (_controller: Dispatcher.DispatchController, chunk: Buffer): void { this.#res.write(chunk) }
  onResponseEnd (): void {
    if (step('accounting')) this.upstreamEnd = performance.now()
    this.#res.end()
  }

  onResponseError (_controller: Dispatcher.DispatchController, err: Error): void { process.stderr.write(String(err) + '\n'); this.#res.destroy() }
}

function forward (req: IncomingMessage, res: ServerResponse, user: string): void {
  const host = req.headers.host ?? ''
  let headers = wire
    ? ['x-forwarded-for', req.socket.remoteAddress ?? '', 'x-forwarded-proto', 'http', 'x-forwarded-host', host, 'x-user-id', user, 'host', host, 'traceparent', TRACEPARENT]
    : ['x-user-id', user, 'host', host]
  if (step('headers')) {
    headers = parts!.upstreamHeaders(req, user, parts!.forwarding)
    parts!.propagator.apply(req, headers)
  }
  if (step('exchange')) {
    parts!.forward(req, res, headers)
    return
  }
  const handler = new Forward(res)
  if (step('accounting')) {
    parts!.outliers.pick(endpoints, 0)
    handler.upstreamStart = performance.now()
  }
  pool.dispatch({ path: req.url ?? '/', method: 'GET', headers }, handler)
}

function handle (req: IncomingMessage, res: ServerResponse): void {
  if (step('accounting')) {
    const started = performance.now()
    res.once('close', () => { parts!.metrics.requests.record(res.statusCode, (performance.now() - started) / 1000, true) })
  }
  if (verifier !== undefined) {
    const { config, checkRequest, isReservedPath, extractToken } = parts!
    if (checkRequest(req, config.gateway.maxRequestHeaders) !== undefined || isReservedPath(req.url)) {
      res.writeHead(400).end()
      return
    }
    const token = extractToken(req.headers, config.auth.cookieName, config.auth.maxTokenBytes) ?? ''
    const identity = verifier.cached(token)
    if (identity !== undefined) {
      forward(req, res, identity.user)
      return
    }
    verifier.verify(token).then((verified) => { forward(req, res, verified.user) }, () => { res.writeHead(401).end() })
    return
  }
  const token = req.headers.authorization?.slice(7) ?? ''
  const user = users.get(token)
  if (user !== undefined) {
    forward(req, res, user)
    return
  }
  jwtVerify(token, secret, { algorithms: ['HS256'] }).then(({ payload }) => {
    users.set(token, String(payload.sub))
    forward(req, res, String(payload.sub))
  }, () => { res.writeHead(401).end() })
}

const serverOptions: ServerOptions<typeof IncomingMessage, typeof ServerResponse> = {}
if (step('server-limits')) {
  const limits = parts!.config.gateway
  Object.assign(serverOptions, { keepAliveTimeout: limits.keepAliveTimeoutMs, maxHeaderSize: 96 * 1024, requestTimeout: 0, headersTimeout: limits.clientHeadersTimeoutMs, connectionsCheckingInterval: 1000 })
}
// With exchange, accounting keeps only what Gateway.handle records: podgate's forward() does the rest itself.
if (step('exchange')) serverOptions.ServerResponse = parts!.GatewayResponse
const server = createServer(serverOptions, handle)
if (step('server-limits')) {
  const { config: { gateway: limits }, metrics } = parts!
  server.maxHeadersCount = limits.maxRequestHeaders + 1
  server.timeout = limits.clientIdleTimeoutMs
  server.on('connection', (socket) => {
    metrics.openConnections.inc()
    socket.once('close', () => { metrics.openConnections.dec() })
  })
}
// An orderly exit, so that a profile asked for with --cpu-prof is written (bench/profile.ts).
process.once('SIGTERM', () => { process.exit(0) })
server.listen(0, '127.0.0.1', () => {
  const address = server.address()
  if (address === null || typeof address === 'string') throw new Error('no TCP address')
  process.stdout.write(JSON.stringify({ listening: { address: address.address, port: address.port } }) + '\n')
})
