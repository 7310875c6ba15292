// The client-side limits, token-age settings and served namespaces: defaults, and one
// ConfigError naming the variable for each value that cannot work.
import t from 'tap'
import { loadConfig, servedNamespaces } from '../src/config.ts'
import { ConfigError } from '../src/errors.ts'
import { runDemo } from '../src/local/demo.ts'
import { createLogger } from '../src/log.ts'

const KEY = { PODGATE_JWT_SECRET: 'a-secret-of-at-least-thirty-two-bytes!' }

void t.test('defaults', (t) => {
  const { gateway, auth } = loadConfig(KEY)
  t.equal(gateway.clientHeadersTimeoutMs, 30_000, 'a request head must arrive within 30 s')
  t.equal(gateway.keepAliveTimeoutMs, 65_000, 'keep-alive above the 60 s of common load balancers')
  t.equal(gateway.clientIdleTimeoutMs, 330_000, 'idle: the longest wait podgate answers itself (300 s body) plus 30 s')
  t.equal(gateway.maxConnections, 0, 'no connection cap unless asked')
  t.equal(gateway.maxRequestHeaders, 100)
  t.equal(gateway.upstreamConnections, 256, 'connections per pod endpoint')
  t.equal(auth.maxAgeS, undefined, 'no token age cap unless asked')
  t.end()
})

void t.test('the idle timeout default follows the longest upstream wait', (t) => {
  const { gateway } = loadConfig({ ...KEY, PODGATE_START_TIMEOUT: '10m' })
  t.equal(gateway.clientIdleTimeoutMs, 630_000)
  t.equal(loadConfig({ ...KEY, PODGATE_CLIENT_IDLE_TIMEOUT: '0' }).gateway.clientIdleTimeoutMs, 0, '0 turns it off')
  t.equal(loadConfig({ ...KEY, PODGATE_JWT_MAX_AGE: '12h' }).auth.maxAgeS, 43_200)
  t.end()
})

void t.test('values that cannot work stop start-up naming the variable', (t) => {
  const bad: Array<[Record<string, string>, string, RegExp]> = [
    [{ PODGATE_CLIENT_HEADERS_TIMEOUT: '0' }, 'PODGATE_CLIENT_HEADERS_TIMEOUT', /at least 1s/],
    [{ PODGATE_CLIENT_HEADERS_TIMEOUT: 'soon' }, 'PODGATE_CLIENT_HEADERS_TIMEOUT', /expected a duration/],
    [{ PODGATE_CLIENT_IDLE_TIMEOUT: '60s' }, 'PODGATE_CLIENT_IDLE_TIMEOUT', /longer than the longest wait podgate answers itself, 300000 ms/],
    [{ PODGATE_CLIENT_IDLE_TIMEOUT: '1m', PODGATE_BODY_TIMEOUT: '10s', PODGATE_START_TIMEOUT: '90s' }, 'PODGATE_CLIENT_IDLE_TIMEOUT', /90000 ms/],
    [{ PODGATE_KEEP_ALIVE_TIMEOUT: '-1s' }, 'PODGATE_KEEP_ALIVE_TIMEOUT', /expected a duration/],
    [{ PODGATE_MAX_CONNECTIONS: '-5' }, 'PODGATE_MAX_CONNECTIONS', /integer from 0/],
    [{ PODGATE_MAX_REQUEST_HEADERS: '5' }, 'PODGATE_MAX_REQUEST_HEADERS', /integer from 16 to 1000/],
    [{ PODGATE_MAX_REQUEST_HEADERS: '5000' }, 'PODGATE_MAX_REQUEST_HEADERS', /integer from 16 to 1000/],
    [{ PODGATE_UPSTREAM_CONNECTIONS: '0' }, 'PODGATE_UPSTREAM_CONNECTIONS', /integer from 1 to 65535/],
    [{ PODGATE_UPSTREAM_CONNECTIONS: 'many' }, 'PODGATE_UPSTREAM_CONNECTIONS', /integer from 1 to 65535/],
    [{ PODGATE_JWT_MAX_AGE: '500ms' }, 'PODGATE_JWT_MAX_AGE', /at least 1s/],
    [{ PODGATE_JWT_MAX_AGE: 'forever' }, 'PODGATE_JWT_MAX_AGE', /expected a duration/],
  ]
  for (const [env, variable, problem] of bad) {
    let thrown: unknown
    try {
      loadConfig({ ...KEY, ...env })
    } catch (err) {
      thrown = err
    }
    t.ok(thrown instanceof ConfigError && thrown.variable === variable, `${JSON.stringify(env)} → ${variable}`)
    t.match((thrown as Error | undefined)?.message, problem, `${JSON.stringify(env)}: says what is wrong`)
  }
  t.end()
})

void t.test('PODGATE_NAMESPACES: the namespaces podgate routes from and provisions in', (t) => {
  const routingOnly = { ...KEY, PODGATE_PROVISIONER: 'false' }
  t.equal(loadConfig(KEY).namespaces, undefined, 'unset: the one namespace podgate resolves')
  t.same(servedNamespaces(loadConfig(KEY), 'from-pod'), ['from-pod'])
  t.same(loadConfig({ ...routingOnly, PODGATE_NAMESPACES: 'team-a, team-b,team-a' }).namespaces, ['team-a', 'team-b'], 'trimmed, without repeats')
  t.equal(loadConfig({ ...routingOnly, PODGATE_NAMESPACES: '*', PODGATE_CLUSTER_SCOPE: 'true' }).namespaces, 'all')
  t.same(servedNamespaces(loadConfig({ ...routingOnly, PODGATE_NAMESPACES: 'team-a,team-b' }), 'podgate'), ['team-a', 'team-b'], 'a routing-only gateway serves any list')
  t.same(servedNamespaces(loadConfig({ ...KEY, PODGATE_NAMESPACE: 'podgate', PODGATE_NAMESPACES: 'team-a,team-b' }), 'podgate'), ['team-a', 'team-b'], 'the provisioner serves tenant namespaces other than its own')
  t.equal(servedNamespaces(loadConfig({ ...KEY, PODGATE_NAMESPACES: '*', PODGATE_CLUSTER_SCOPE: 'true' }), 'podgate'), 'all', 'and every namespace with the cluster-scope opt-in')
  t.end()
})

void t.test('PODGATE_NAMESPACES that cannot work stop start-up naming it and what to set', (t) => {
  const refused: Array<[Record<string, string>, string | undefined, RegExp]> = [
    [{ PODGATE_NAMESPACES: '*', PODGATE_PROVISIONER: 'false' }, undefined, /set PODGATE_CLUSTER_SCOPE=true/],
    [{ PODGATE_NAMESPACES: '*', PODGATE_PROVISIONER: 'false', PODGATE_CLUSTER_SCOPE: 'false' }, undefined, /cluster-wide list\/watch rights/],
    [{ PODGATE_NAMESPACES: '*,team-a', PODGATE_PROVISIONER: 'false', PODGATE_CLUSTER_SCOPE: 'true' }, undefined, /not both/],
    [{ PODGATE_NAMESPACES: 'Team_A', PODGATE_PROVISIONER: 'false' }, undefined, /"Team_A" is not a namespace name/],
    [{ PODGATE_NAMESPACES: ',', PODGATE_PROVISIONER: 'false' }, undefined, /empty list/],
    [{ PODGATE_NAMESPACES: '*' }, undefined, /set PODGATE_CLUSTER_SCOPE=true/],
  ]
  for (const [env, resolved, problem] of refused) {
    let thrown: unknown
    try {
      const config = loadConfig({ ...KEY, ...env })
      if (resolved !== undefined) servedNamespaces(config, resolved)
    } catch (err) {
      thrown = err
    }
    t.ok(thrown instanceof ConfigError && thrown.variable === 'PODGATE_NAMESPACES', `${JSON.stringify(env)} → PODGATE_NAMESPACES`)
    t.match((thrown as Error | undefined)?.message, problem, `${JSON.stringify(env)}: says what to set`)
  }
  t.end()
})

void t.test('PODGATE_TENANT_CLAIM: off unless set, a claim name, and refused where no namespace could match', (t) => {
  t.equal(loadConfig(KEY).auth.tenantClaim, undefined, 'unset: no tenant check')
  t.equal(loadConfig({ ...KEY, PODGATE_TENANT_CLAIM: 'https://example.com/tenant' }).auth.tenantClaim, 'https://example.com/tenant', 'the same names PODGATE_USER_CLAIM takes')
  for (const [env, problem] of [[{ PODGATE_TENANT_CLAIM: 'has space' }, /invalid value/], [{ PODGATE_TENANT_CLAIM: 'tenant', PODGATE_LOCAL_ROUTES: '/tmp/routes.json' }, /PODGATE_LOCAL_ROUTES has no namespaces/]] as const) {
    let thrown: unknown
    try {
      loadConfig({ ...KEY, ...env })
    } catch (err) {
      thrown = err
    }
    t.ok(thrown instanceof ConfigError && thrown.variable === 'PODGATE_TENANT_CLAIM', `${JSON.stringify(env)} → PODGATE_TENANT_CLAIM`)
    t.match((thrown as Error | undefined)?.message, problem)
  }
  t.equal(loadConfig({ ...KEY, PODGATE_LOCAL_ROUTES: '/tmp/routes.json' }).routesFile, '/tmp/routes.json', 'a routes file without the claim is fine')
  t.end()
})

void t.test('podgate demo refuses PODGATE_TENANT_CLAIM before starting anything: its backends have no namespace', async (t) => {
  const env = { PODGATE_TENANT_CLAIM: 'tenant' }
  const out = { write: () => true } as unknown as NodeJS.WritableStream
  await t.rejects(runDemo({ config: loadConfig(env, { requireKey: false }), env, logger: createLogger('silent'), out }), { variable: 'PODGATE_TENANT_CLAIM', message: /no namespaces/ })
})
