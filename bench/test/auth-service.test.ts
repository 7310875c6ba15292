import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'
import t, { type Test } from 'tap'
import { authCallsProblem, authServiceConfig, CALLS_PATH, MAX_WARM_CACHE_CALLS, parseStubStatusRequests, startAuthService } from '../auth-service.ts'
import { probe } from '../http-probe.ts'
import { describeMachine, hasTaskset, planCpus } from '../machine.ts'
import { nginxPath } from '../paths/nginx.ts'
import { podgatePath } from '../paths/podgate.ts'
import type { PathContext } from '../paths/types.ts'
import { Prerequisites } from '../prerequisites.ts'
import { ProcessGroup } from '../processes.ts'
import { bearer, opaqueToken } from '../tokens.ts'
import { startUpstream } from '../upstream.ts'

const benchDir = dirname(dirname(fileURLToPath(import.meta.url)))
const repoDir = dirname(benchDir)
const TOKEN = 'AbCdEfGhIjKlMnOpQrStUv-_0123456789'


void t.test('the config answers from a map with case-sensitive regex keys, and counts calls with stub_status', (t) => {
  const config = authServiceConfig({ dir: '/tmp/auth', port: 8124, users: { [TOKEN]: 'alice', 'other-token-0123456789': 'bob' } })
  t.match(config, `"~^Bearer ${TOKEN}$" alice;`)
  t.match(config, '"~^Bearer other-token-0123456789$" bob;')
  t.match(config, /map \$http_authorization \$bench_user \{\n\s+default "";/)
  t.match(config, /if \(\$bench_user = ""\) \{ return 401; \}\n\s+add_header X-User-ID \$bench_user;\n\s+return 200;/)
  t.match(config, `location = ${CALLS_PATH} { stub_status; }`)
  t.match(config, 'listen 127.0.0.1:8124;')
  t.match(config, 'pid /tmp/auth/nginx.pid;')
  t.match(config, 'access_log off;')
  t.end()
})

void t.test('tokens and users that could break the config or the identity are refused', (t) => {
  const render = (users: Record<string, string>) => () => authServiceConfig({ dir: '/tmp/auth', port: 1, users })
  t.throws(render({}), /at least one token/)
  t.throws(render({ 'short': 'alice' }), /16–512 base64url/)
  t.throws(render({ [`${TOKEN}$" x; "`]: 'alice' }), /16–512 base64url/)
  t.throws(render({ [TOKEN]: 'Alice' }), /not a DNS-1123 label/)
  t.throws(render({ [TOKEN]: 'alice; }' }), /not a DNS-1123 label/)
  t.doesNotThrow(render({ [opaqueToken()]: 'alice' }), 'the benchmark\'s own opaque tokens fit')
  t.end()
})

void t.test('stub_status pages give their request count', (t) => {
  t.equal(parseStubStatusRequests('Active connections: 1 \nserver accepts handled requests\n 6 6 27 \nReading: 0 Writing: 1 Waiting: 0 \n'), 27)
  t.throws(() => parseStubStatusRequests('<html>404</html>'), /not a stub_status page/)
  t.end()
})

void t.test('a warm cache asks about once; nginx asks for every request served', (t) => {
  const cases: Array<[Parameters<typeof authCallsProblem>, RegExp | undefined]> = [
    [['once', 1, 120_000], undefined],
    [['once', MAX_WARM_CACHE_CALLS, 120_000], undefined],
    [['once', MAX_WARM_CACHE_CALLS + 1, 120_000], /answered 3 calls for 120000 requests; a warm cache asks 1 to 2 times/],
    [['once', 0, 120_000], /answered 0 calls/],
    [['per-request', 120_000, 120_000], undefined],
    [['per-request', 120_064, 120_000], undefined],
    [['per-request', 119_999, 120_000], /every request should have asked it/],
  ]
  for (const [args, problem] of cases) {
    if (problem === undefined) t.equal(authCallsProblem(...args), undefined, JSON.stringify(args))
    else t.match(authCallsProblem(...args), problem, JSON.stringify(args))
  }
  t.end()
})

async function contextWithNginx (t: Test): Promise<{ context: PathContext, binary: string }> {
  const root = new ProcessGroup()
  const workDir = mkdtempSync(join(tmpdir(), 'bench-auth-'))
  t.teardown(async () => {
    await root.stopAll()
    rmSync(workDir, { recursive: true, force: true })
  })
  // Installed as the benchmark does (apt-get as root, once per machine): like every suite, this never skips.
  const prerequisites = new Prerequisites({ processes: root, cacheDir: workDir, install: true, log: (line) => { t.comment(line) } })
  const nginx = await prerequisites.nginx()
  if (!nginx.ok) throw new Error(nginx.reason)
  const cpus = planCpus(describeMachine().allowedCpus, hasTaskset())
  const upstream = await startUpstream({ processes: root, repoDir, benchDir, cpus: cpus.upstream, choice: 'fixed' })
  const context: PathContext = { repoDir, benchDir, workDir, processes: root.child(), cpus, upstream, prerequisites, log: () => {} }
  return { context, binary: nginx.value.binary }
}

void t.test('the auth service answers 200 + X-User-ID for its tokens only, and counts only the calls', async (t) => {
  const setUp = await contextWithNginx(t)
  const service = await startAuthService(setUp.context, setUp.binary, 'auth-service-test', { [TOKEN]: 'alice' })
  const allowed = await probe(service.url, { headers: bearer(TOKEN) })
  t.equal(allowed.status, 200)
  t.equal(allowed.headers['x-user-id'], 'alice')
  for (const authorization of [`Bearer ${TOKEN.toLowerCase()}`, `Bearer ${TOKEN}x`, `Bearer x${TOKEN}`, TOKEN, undefined]) {
    const refused = await probe(service.url, { headers: authorization === undefined ? {} : { authorization } })
    t.equal(refused.status, 401, `refuses ${String(authorization)}`)
    t.equal(refused.headers['x-user-id'], undefined)
  }
  const counter = service.probe('per-request')
  t.equal(counter.expect, 'per-request')
  t.equal((await counter.usage()).calls, 6, 'the six calls, not the readiness polls or the counter\'s own reads')
  await probe(service.url, { headers: bearer(TOKEN) })
  t.equal((await counter.usage()).calls, 7, 'reading the counter again does not count the reads')
})

void t.test('podgate-auth-url asks the auth service once for many requests; nginx-auth-request asks every time', async (t) => {
  const setUp = await contextWithNginx(t)
  const { context } = setUp
  const requests = 20
  const paths = [
    { path: podgatePath({ id: 'podgate-auth-url', title: 't', measures: ['throughput'], alg: 'HS256', tokenCache: true, users: 1, tokens: 1, workers: 1, pinned: true, authUrl: true }), calls: 1 },
    { path: nginxPath('auth-request', ['throughput']), calls: requests },
  ]
  for (const { path, calls } of paths) {
    t.equal(await path.unavailable?.(context), undefined, `${path.id} can run here`)
    const running = await path.start(context)
    const headers = running.headerSets[0]!
    t.notMatch(headers.authorization, /\./, `${path.id}: the token is opaque, not a JWT`)
    const before = (await running.authService!.usage()).calls
    for (let index = 0; index < requests; index++) {
      const response = await probe(`${running.baseUrl}/fixed`, { headers })
      t.equal(response.status, 200)
      t.equal(response.body.length, 100)
    }
    const refused = await probe(`${running.baseUrl}/fixed`, { headers: bearer(`${headers.authorization!.slice('Bearer '.length)}x`) })
    t.equal(refused.status, 401, `${path.id}: a token the service does not know is refused`)
    const usage = await running.authService!.usage()
    t.equal(usage.calls - before, calls + 1, `${path.id}: ${calls} call(s) for ${requests} requests, and one for the refused token`)
    await context.processes.stopAll()
  }
})
