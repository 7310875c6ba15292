// What a gateway worker costs. It starts with a fixed young generation, two V8 background
// threads and two malloc arenas unless the operator set those, and the image gives
// `podgate serve` the same. What a worker and a routing-only
// process load, checked on real process trees: every module each process loads is logged by
// a preloaded hook (test/support/module-log.ts), and the heavy parts a process does not serve
// (the Kubernetes client alone is some 50 MiB of RSS, bench/results/memory.md) must never be
// among them, nor Node's bundled undici (its fetch and WebSocket), which an ES import of
// node:http would load.
import { mkdtempSync, readFileSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { promisify } from 'node:util'
import { execFile } from 'node:child_process'
import t, { type Test } from 'tap'
import { request } from 'undici'
import { applyGatewayV8Flags, forkEnv, GATEWAY_V8_FLAGS, WORKER_MALLOC_ARENA_MAX, WORKER_NODE_OPTIONS } from '../../src/workers/worker-options.ts'
import { startKubeServe } from '../support/kube-serve.ts'

const execNode = async (args: readonly string[]): Promise<{ stdout: string }> => await promisify(execFile)(process.execPath, args, { maxBuffer: 16 * 1024 * 1024 })
const HOOK = fileURLToPath(new URL('../support/module-log.ts', import.meta.url))
const DOCKERFILE = fileURLToPath(new URL('../../Dockerfile', import.meta.url))

/** Loading any of these in a gateway worker is a regression: the primary does that work. */
const NOT_IN_A_WORKER = [
  '/node_modules/@kubernetes/client-node/',
  '/node_modules/fastify/',
  '/src/kube/kubeconfig.ts',
  '/src/kube/informer.ts',
  '/src/discovery/kubernetes.ts',
  '/src/controller/',
  '/src/gateway/admin.ts',
  '/src/workloads/admin-api.ts',
  '/src/workloads/gateway-plugin.ts',
  'internal:deps/undici/',
]

/**
 * A process that routes and does not provision needs the Kubernetes client for its watch (which
 * itself imports node:http as an ES module, so Node's undici comes with it), and nothing of this.
 */
const NOT_IN_ROUTING_ONLY = [
  '/src/controller/',
  '/src/workloads/admin-api.ts',
  '/src/workloads/gateway-plugin.ts',
  '/src/workloads/spawner.ts',
  '/src/workloads/culler.ts',
]

function moduleLogDir (t: Test): string {
  const dir = mkdtempSync(join(tmpdir(), 'podgate-modules-'))
  t.teardown(() => { rmSync(dir, { recursive: true, force: true }) })
  return dir
}

function loaded (dir: string, pid: number): string[] {
  return readFileSync(join(dir, `${pid}.log`), 'utf8').trim().split('\n')
}

function childPids (pid: number): number[] {
  return readFileSync(`/proc/${pid}/task/${pid}/children`, 'utf8').trim().split(/\s+/).filter(Boolean).map(Number)
}

const v8Flags = (lines: readonly string[]): string[] =>
  lines.filter((line) => line.startsWith('v8flag:')).map((line) => line.slice('v8flag:'.length))

const matching = (modules: readonly string[], parts: readonly string[]): string[] =>
  modules.filter((url) => parts.some((part) => url.includes(part)))

void t.test('a worker gets each default in its environment unless its command line or environment sets it', (t) => {
  const defaults = WORKER_NODE_OPTIONS.join(' ')
  t.same(WORKER_NODE_OPTIONS, ['--max-semi-space-size=8', '--v8-pool-size=2'])
  const cases: Array<[readonly string[], Record<string, string>, Record<string, string>]> = [
    [[], {}, { NODE_OPTIONS: defaults, MALLOC_ARENA_MAX: WORKER_MALLOC_ARENA_MAX }],
    [['--max-old-space-size=200'], { NODE_OPTIONS: '--enable-source-maps' }, { NODE_OPTIONS: `--enable-source-maps ${defaults}`, MALLOC_ARENA_MAX: '2' }],
    [['--max-semi-space-size=2'], {}, { NODE_OPTIONS: '--v8-pool-size=2', MALLOC_ARENA_MAX: '2' }],
    [['--max_semi_space_size', '2'], { NODE_OPTIONS: '--v8-pool-size=4', MALLOC_ARENA_MAX: '8' }, { NODE_OPTIONS: '--v8-pool-size=4', MALLOC_ARENA_MAX: '8' }],
    [[], { NODE_OPTIONS: '--import x.js  --max-semi-space-size=0' }, { NODE_OPTIONS: '--import x.js  --max-semi-space-size=0 --v8-pool-size=2', MALLOC_ARENA_MAX: '2' }],
    [[], { NODE_OPTIONS: '"--import=x.js" "--max-semi-space-size=2" "--v8-pool-size=1"' }, { NODE_OPTIONS: '"--import=x.js" "--max-semi-space-size=2" "--v8-pool-size=1"', MALLOC_ARENA_MAX: '2' }],
    [[], { NODE_OPTIONS: '--max-semi-space-size-other=1' }, { NODE_OPTIONS: `--max-semi-space-size-other=1 ${defaults}`, MALLOC_ARENA_MAX: '2' }],
  ]
  for (const [execArgv, env, expected] of cases) {
    t.same(forkEnv({ PODGATE_PORT: '8080', ...env }, execArgv), { PODGATE_PORT: '8080', ...expected }, `${execArgv.join(' ')} | ${JSON.stringify(env)}`)
  }
  t.end()
})

void t.test('a gateway process sets its V8 flags unless its command line names them, either way', (t) => {
  t.same(GATEWAY_V8_FLAGS, ['--no-allocation-site-pretenuring'])
  const cases: Array<[readonly string[], readonly string[]]> = [
    [[], GATEWAY_V8_FLAGS],
    [['--max-semi-space-size=8', '--import=x.js'], GATEWAY_V8_FLAGS],
    [['--allocation-site-pretenuring'], []],
    [['--no-allocation-site-pretenuring'], []],
    [['--allocation_site_pretenuring'], []],
    [['--allocation-site-pretenuring-other'], GATEWAY_V8_FLAGS],
  ]
  for (const [execArgv, expected] of cases) {
    const set: string[] = []
    t.same(applyGatewayV8Flags(execArgv, (flag) => { set.push(flag) }), expected, execArgv.join(' '))
    t.same(set, expected, `${execArgv.join(' ')}: handed to V8`)
  }
  t.end()
})

void t.test('with the flags set, V8 stops moving allocation sites to the old generation', async (t) => {
  // Objects from one literal that all survive: V8 would pretenure the site (and trace it).
  const script = `
    import { applyGatewayV8Flags } from ${JSON.stringify(new URL('../../src/workers/worker-options.ts', import.meta.url).href)}
    if (process.argv[1] === 'apply') applyGatewayV8Flags(process.execArgv)
    const kept = []
    const make = (i) => ({ i, list: [1, 2, 3], inner: { i } })
    for (let round = 0; round < 40; round++) {
      for (let i = 0; i < 50_000; i++) kept.push(make(i))
      await new Promise((resolve) => setImmediate(resolve))
    }`
  const traced = async (mode: string): Promise<number> => {
    const { stdout } = await execNode(['--trace-pretenuring', '--trace-pretenuring-statistics', '--input-type=module', '-e', script, mode])
    return stdout.split('\n').filter((line) => line.includes('pretenuring')).length
  }
  t.ok(await traced('leave') > 0, 'V8 traces pretenuring decisions by default')
  t.equal(await traced('apply'), 0, 'and none once the gateway\'s flags are set')
})

void t.test('the image starts podgate serve with what forked workers get', (t) => {
  const dockerfile = readFileSync(DOCKERFILE, 'utf8')
  t.match(dockerfile, new RegExp(`^\\s+NODE_OPTIONS="${WORKER_NODE_OPTIONS.join(' ')}" \\\\$`, 'm'))
  t.match(dockerfile, new RegExp(`^\\s+MALLOC_ARENA_MAX=${WORKER_MALLOC_ARENA_MAX}$`, 'm'))
  t.end()
})

void t.test('gateway workers load neither the Kubernetes client nor the admin server nor the provisioner', async (t) => {
  const dir = moduleLogDir(t)
  const { serve } = await startKubeServe(t, { PODGATE_WORKERS: '2', NODE_OPTIONS: `--import=${HOOK}`, MODULE_LOG_DIR: dir })
  const primary = loaded(dir, serve.child.pid as number)
  t.same(v8Flags(primary).filter((flag) => GATEWAY_V8_FLAGS.includes(flag)), GATEWAY_V8_FLAGS, 'the primary set the gateway\'s V8 flags')
  t.ok(primary.some((url) => url.includes('/node_modules/@kubernetes/client-node/')), 'the hook saw the primary load the Kubernetes client')
  t.ok(primary.some((url) => url.endsWith('/src/controller/provisioner.ts')), 'and the provisioner')
  const workers = childPids(serve.child.pid as number)
  t.equal(workers.length, 2)
  for (const pid of workers) {
    const env = readFileSync(`/proc/${pid}/environ`, 'utf8').split('\0')
    const nodeOptions = env.find((entry) => entry.startsWith('NODE_OPTIONS='))
    t.match(nodeOptions, new RegExp(`--import=${HOOK}.* "?${WORKER_NODE_OPTIONS.join('"? "?')}"?$`), `worker ${pid} runs with ${WORKER_NODE_OPTIONS.join(' ')} after the options it inherited`)
    t.ok(env.includes(`MALLOC_ARENA_MAX=${WORKER_MALLOC_ARENA_MAX}`), 'and two malloc arenas')
  }
  // Answers a worker renders itself (a 401 for a program, the sign-in page for a browser), then every process exits.
  for (const accept of ['application/json', 'text/html']) {
    const response = await request(`${serve.gatewayUrl}/`, { headers: { accept, connection: 'close' } })
    await response.body.dump()
    t.equal(response.statusCode, 401, accept)
  }
  t.equal(await serve.stop(), 0)
  for (const pid of workers) {
    const modules = loaded(dir, pid)
    t.ok(modules.some((url) => url.endsWith('/src/gateway/gateway.ts')), `worker ${pid} loaded the gateway`)
    t.same(v8Flags(modules).filter((flag) => GATEWAY_V8_FLAGS.includes(flag)), GATEWAY_V8_FLAGS, `worker ${pid} set the gateway's V8 flags`)
    t.same(matching(modules, NOT_IN_A_WORKER), [], `worker ${pid} loaded nothing of the primary's work`)
  }
})

void t.test('a routing-only process loads the Kubernetes client for its watch and nothing of the provisioner', async (t) => {
  const dir = moduleLogDir(t)
  const { serve } = await startKubeServe(t, { PODGATE_PROVISIONER: 'false', NODE_OPTIONS: `--import=${HOOK}`, MODULE_LOG_DIR: dir }, { lead: false })
  const response = await request(`${serve.gatewayUrl}/`, { headers: { accept: 'text/html' } })
  await response.body.dump()
  t.equal(response.statusCode, 401)
  t.equal(await serve.stop(), 0)
  const modules = loaded(dir, serve.child.pid as number)
  t.ok(modules.some((url) => url.endsWith('/src/discovery/kubernetes.ts')), 'it watches EndpointSlices')
  t.same(matching(modules, NOT_IN_ROUTING_ONLY), [], 'and loaded nothing of the provisioner')
})
