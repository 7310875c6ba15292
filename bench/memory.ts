// Memory of podgate's gateway processes: RSS at rest, right after a bounded load and once
// idle again, broken down (V8 heap by space, external and ArrayBuffer memory, what lies
// outside the V8 heap, garbage collections), for Node's defaults against the flags podgate
// sets, one process against gateway workers, closed-loop (autocannon) against a constant
// rate (vegeta), and what each heavy module costs to import. Every configuration runs in
// fresh processes (podgate, its upstream, the load), in interleaved rounds; the tables give
// medians. Prints markdown, writes bench/results/memory.md; exit code 1 when a goal is missed.
//
//   node bench/memory.ts [--rounds 2] [--seconds 10] [--rate 4000] [--only id,id]   (~17 minutes on 2 CPUs)
import { existsSync, mkdtempSync, mkdirSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs'
import { availableParallelism, tmpdir, totalmem } from 'node:os'
import { join } from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
import { fileURLToPath, pathToFileURL } from 'node:url'
import { parseArgs } from 'node:util'
import { MAX_BYTES_PER_USER } from './goals.ts'
import { freePort, waitUntilReady } from './http-probe.ts'
import type { HttpLoadResult } from './load/http-load.ts'
import type { OpenLoopSpec } from './load/openloop-load.ts'
import { loopbackSource } from './open-loop.ts'
import type { OpenLoopRun } from './vegeta-results.ts'
import { allowedCpus, hasTaskset, planCpus } from './machine.ts'
import { importCost, type ImportCost } from './memory-imports.ts'
import { PROBE_DIR_VARIABLE, PROBE_IMPORT, takeSamples, type MemorySample } from './memory-probe.ts'
import { Prerequisites } from './prerequisites.ts'
import { ProcessGroup } from './processes.ts'
import { userIds, writeRouteFile } from './route-file.ts'
import { bearer, hs256Key } from './tokens.ts'
import { startUpstream } from './upstream.ts'
import { GATEWAY_V8_FLAGS, WORKER_MALLOC_ARENA_MAX, WORKER_NODE_OPTIONS } from '../src/workers/worker-options.ts'

const REPO = fileURLToPath(new URL('..', import.meta.url))
const BENCH = fileURLToPath(new URL('.', import.meta.url))
const RESULTS_FILE = join(BENCH, 'results', 'memory.md')
const START_TIMEOUT_MS = 60_000
/** After /readyz: start-up garbage collected the way an idle process would. */
const REST_S = 3
/** After the load: long enough for V8's memory reducer to shrink the heap of an idle process. */
const SETTLE_S = 10
const CONNECTIONS = 64
const TOKENS = 16
const GOAL_REST_MIB = 60
const GOAL_LOADED_MIB = 100
const MANY_USERS = 100_000

type Load = 'closed' | 'open' | 'none'
const LOAD_NAMES: Readonly<Record<Load, string>> = { closed: 'closed loop', open: 'constant rate', none: 'at rest' }

interface Variant {
  readonly id: string
  readonly title: string
  /** `dist`: podgate compiled to JavaScript, as the image runs it; `src`: the TypeScript, as `npm run bench` runs it. */
  readonly entry: 'dist' | 'src'
  readonly workers: number
  /** Node options given to `podgate serve` (its workers inherit them). */
  readonly node: readonly string[]
  readonly env?: Readonly<Record<string, string>>
  readonly load: Load
  readonly users?: number
  /** Held to the goals: podgate as it ships. */
  readonly goal?: boolean
}

const semi = (mib: number): string => `--max-semi-space-size=${mib}`
const SEMI8 = semi(8)
const POOL2 = '--v8-pool-size=2'
const ARENA2 = { MALLOC_ARENA_MAX: '2' }
/** What podgate's forked workers get, and the image's `podgate serve`. */
const SHIPPED = { node: WORKER_NODE_OPTIONS, env: { MALLOC_ARENA_MAX: WORKER_MALLOC_ARENA_MAX } }
const SHIPPED_ENV_TITLE = `${WORKER_NODE_OPTIONS.join(' ')}, MALLOC_ARENA_MAX=${WORKER_MALLOC_ARENA_MAX}`
const SHIPPED_TITLE = `${SHIPPED_ENV_TITLE}, ${GATEWAY_V8_FLAGS.join(' ')}`
/** V8's allocation-site pretenuring, which every gateway process turns off for itself unless its command line names it (GATEWAY_V8_FLAGS). */
const PRETENURE = '--allocation-site-pretenuring'
/** Node's and glibc's own choices, given explicitly so that podgate keeps them for its workers. */
const NODE_DEFAULTS = { node: [semi(0), '--v8-pool-size=4', PRETENURE], env: { MALLOC_ARENA_MAX: String(8 * availableParallelism()) } }

const VARIANTS: readonly Variant[] = [
  // What V8 and glibc do on their own.
  { id: 'src', title: 'src/main.ts (type stripping), Node defaults', entry: 'src', workers: 1, node: [PRETENURE], load: 'closed' },
  { id: 'defaults', title: 'Node defaults', entry: 'dist', workers: 1, node: [PRETENURE], load: 'closed' },
  { id: 'defaults-open', title: 'Node defaults', entry: 'dist', workers: 1, node: [PRETENURE], load: 'open' },
  // The young generation's size, then the memory outside the V8 heap, one change at a time.
  ...[2, 4, 8, 16].map((mib): Variant => ({ id: `semi${mib}`, title: semi(mib), entry: 'dist', workers: 1, node: [semi(mib), PRETENURE], load: 'closed' })),
  { id: 'arena2', title: `${SEMI8}, MALLOC_ARENA_MAX=2`, entry: 'dist', workers: 1, node: [SEMI8, PRETENURE], env: ARENA2, load: 'closed' },
  { id: 'pool2', title: `${SEMI8} ${POOL2}`, entry: 'dist', workers: 1, node: [SEMI8, POOL2, PRETENURE], load: 'closed' },
  { id: 'pretenure', title: `one process, ${SHIPPED_ENV_TITLE}, ${PRETENURE}`, entry: 'dist', workers: 1, node: [...SHIPPED.node, PRETENURE], env: SHIPPED.env, load: 'closed' },
  // As shipped: the image's `podgate serve` (one process), and the workers podgate forks.
  { id: 'image', title: `one process, ${SHIPPED_TITLE} (the image)`, entry: 'dist', workers: 1, ...SHIPPED, load: 'closed', goal: true },
  { id: 'image-open', title: `one process, ${SHIPPED_TITLE} (the image)`, entry: 'dist', workers: 1, ...SHIPPED, load: 'open', goal: true },
  { id: 'workers-defaults', title: '2 workers, Node and glibc defaults', entry: 'dist', workers: 2, ...NODE_DEFAULTS, load: 'closed' },
  { id: 'workers-defaults-open', title: '2 workers, Node and glibc defaults', entry: 'dist', workers: 2, ...NODE_DEFAULTS, load: 'open' },
  { id: 'workers', title: '2 workers as podgate forks them', entry: 'dist', workers: 2, node: [], load: 'closed', goal: true },
  { id: 'workers-open', title: '2 workers as podgate forks them', entry: 'dist', workers: 2, node: [], load: 'open', goal: true },
  { id: 'users-1', title: `1 user routable, ${SHIPPED_TITLE}`, entry: 'dist', workers: 1, ...SHIPPED, load: 'none', users: 1 },
  { id: 'users-100k', title: `${MANY_USERS.toLocaleString('en-US')} users routable, ${SHIPPED_TITLE}`, entry: 'dist', workers: 1, ...SHIPPED, load: 'none', users: MANY_USERS },
]

interface ProcessRun {
  readonly role: 'process' | 'primary' | 'worker'
  readonly rest: MemorySample
  readonly loaded: MemorySample
  readonly settled: MemorySample
}

interface Run {
  readonly variant: Variant
  readonly requests: number
  /** What the load asked for and got, in words (a constant rate not held is said). */
  readonly loadNote: string
  readonly processes: readonly ProcessRun[]
}

interface Settings {
  readonly rounds: number
  readonly seconds: number
  readonly rate: number
  readonly only: readonly string[]
}

function readSettings (): Settings {
  const { values } = parseArgs({ options: { rounds: { type: 'string', default: '2' }, seconds: { type: 'string', default: '10' }, rate: { type: 'string', default: '4000' }, only: { type: 'string', default: '' } } })
  const positive = (name: string, text: string): number => {
    const value = Number(text)
    if (!Number.isInteger(value) || value < 1) throw new Error(`--${name}: expected a positive integer, got ${JSON.stringify(text)}`)
    return value
  }
  const only = values.only.split(',').filter((id) => id !== '')
  const unknown = only.filter((id) => !VARIANTS.some((variant) => variant.id === id))
  if (unknown.length > 0) throw new Error(`--only: unknown ${unknown.join(', ')}; known: ${VARIANTS.map((variant) => variant.id).join(', ')}`)
  return { rounds: positive('rounds', values.rounds), seconds: positive('seconds', values.seconds), rate: positive('rate', values.rate), only }
}

/** podgate compiled to JavaScript in a scratch directory that resolves packages from this checkout. */
async function buildDist (processes: ProcessGroup, dir: string): Promise<string> {
  symlinkSync(join(REPO, 'node_modules'), join(dir, 'node_modules'))
  writeFileSync(join(dir, 'package.json'), JSON.stringify({ type: 'module' }))
  const out = join(dir, 'dist')
  const tsc = processes.spawn('tsc', process.execPath, [join(REPO, 'node_modules', 'typescript', 'bin', 'tsc'), '-p', join(REPO, 'tsconfig.build.json'), '--outDir', out, '--sourceMap', 'false'], { cwd: REPO })
  // Type errors elsewhere in a working tree do not stop tsc from writing JavaScript.
  await tsc.finished(120_000)
  return out
}

async function runVariant (variant: Variant, settings: Settings, context: { processes: ProcessGroup, dist: string, work: string, vegeta: string | undefined }): Promise<Run> {
  const processes = context.processes.child()
  const probeDir = mkdtempSync(join(context.work, `${variant.id}-`))
  const cpus = planCpus(allowedCpus(readFileSync('/proc/self/status', 'utf8')), hasTaskset())
  try {
    const upstream = await startUpstream({ processes, repoDir: REPO, benchDir: BENCH, cpus: cpus.upstream, choice: 'auto' })
    const routes = join(probeDir, 'routes.json')
    writeRouteFile(routes, userIds(variant.users ?? 1), upstream.address)
    const key = hs256Key()
    const tokens = await Promise.all(Array.from({ length: TOKENS }, async (_, index) => await key.sign(userIds(1)[0]!, `memory-${index}`)))
    const [port, adminPort] = [await freePort(), await freePort()]
    const main = variant.entry === 'dist' ? join(context.dist, 'main.js') : join(REPO, 'src', 'main.ts')
    const proxy = processes.spawn(variant.id, process.execPath, [PROBE_IMPORT, ...variant.node, main, 'serve'], {
      // One gateway process pinned like every proxy of the benchmark; workers may use every CPU.
      cpus: variant.workers === 1 ? cpus.proxy : undefined,
      cwd: REPO,
      env: {
        PATH: process.env.PATH ?? '',
        [PROBE_DIR_VARIABLE]: probeDir,
        PODGATE_HOST: '127.0.0.1',
        PODGATE_PORT: String(port),
        PODGATE_ADMIN_PORT: String(adminPort),
        PODGATE_JWT_SECRET: key.verifier,
        PODGATE_LOCAL_ROUTES: routes,
        PODGATE_LOG_LEVEL: 'warn',
        PODGATE_ACCESS_LOG: 'false',
        PODGATE_WORKERS: String(variant.workers),
        ...variant.env,
      },
    })
    await waitUntilReady(`http://127.0.0.1:${adminPort}/readyz`, { process: proxy, timeoutMs: START_TIMEOUT_MS })
    await sleep(REST_S * 1000)
    const rest = await takeSamples(probeDir)
    const url = `http://127.0.0.1:${port}/fixed`
    const headerSets = tokens.map(bearer)
    let requests = 0
    let loadNote = 'none'
    if (variant.load === 'closed') {
      const result = await processes.spawn('autocannon', process.execPath, [join(BENCH, 'load', 'http-load.ts'), JSON.stringify({ url, connections: CONNECTIONS, durationS: settings.seconds, headerSets })], { cpus: cpus.load })
        .result<HttpLoadResult>((settings.seconds + 30) * 1000)
      requests = result.ok
      loadNote = `${CONNECTIONS} connections, ${Math.round(result.rps).toLocaleString('en-US')} req/s`
    } else if (variant.load === 'open') {
      if (context.vegeta === undefined) throw new Error('vegeta is not installed')
      const result = await processes.spawn('vegeta', process.execPath, [join(BENCH, 'load', 'openloop-load.ts'), JSON.stringify({ vegeta: context.vegeta, url, rate: settings.rate, durationS: settings.seconds, warmupS: 1, headerSets, localAddress: loopbackSource() } satisfies OpenLoopSpec)], { cpus: cpus.load })
        .result<OpenLoopRun>((settings.seconds + 60) * 1000)
      requests = result.ok
      const held = result.achievedRps >= settings.rate * 0.95
      loadNote = `${settings.rate.toLocaleString('en-US')} req/s offered, ${Math.round(result.achievedRps).toLocaleString('en-US')} answered${held ? '' : ' (rate not held)'}, p99 ${result.p99Ms.toFixed(1)} ms`
    }
    const loaded = await takeSamples(probeDir)
    await sleep(SETTLE_S * 1000)
    const settled = await takeSamples(probeDir)
    const byPid = (samples: readonly MemorySample[], pid: number): MemorySample => {
      const sample = samples.find((s) => s.pid === pid)
      if (sample === undefined) throw new Error(`${variant.id}: process ${pid} was replaced during the run`)
      return sample
    }
    const runs = rest.map((sample): ProcessRun => ({
      role: sample.role === 'worker' ? 'worker' : variant.workers > 1 ? 'primary' : 'process',
      rest: sample,
      loaded: byPid(loaded, sample.pid),
      settled: byPid(settled, sample.pid),
    }))
    return { variant, requests, loadNote, processes: runs }
  } finally {
    await processes.shutdown()
    rmSync(probeDir, { recursive: true, force: true })
  }
}

// ---- report

const MIB = 1024 * 1024
const median = (values: readonly number[]): number => {
  const sorted = [...values].sort((a, b) => a - b)
  const middle = Math.floor(sorted.length / 2)
  return sorted.length % 2 === 1 ? sorted[middle]! : (sorted[middle - 1]! + sorted[middle]!) / 2
}
const mib = (bytes: number): string => (bytes / MIB).toFixed(1)
const kbMib = (kb: number): string => (kb / 1024).toFixed(1)

/** The V8 heap's resident bytes, all spaces. */
const heapResident = (sample: MemorySample): number => Object.values(sample.spaces).reduce((sum, bytes) => sum + bytes, 0)
const space = (sample: MemorySample, ...names: string[]): number => names.reduce((sum, name) => sum + (sample.spaces[name] ?? 0), 0)

interface Row { readonly variant: Variant, readonly role: ProcessRun['role'], readonly runs: readonly ProcessRun[], readonly requests: number, readonly notes: readonly string[] }

function rows (runs: readonly Run[]): Row[] {
  const result: Row[] = []
  for (const variant of VARIANTS) {
    const ofVariant = runs.filter((run) => run.variant === variant)
    if (ofVariant.length === 0) continue
    for (const role of ['process', 'primary', 'worker'] as const) {
      const processes = ofVariant.flatMap((run) => run.processes.filter((p) => p.role === role))
      if (processes.length === 0) continue
      result.push({ variant, role, runs: processes, requests: median(ofVariant.map((run) => run.requests)), notes: ofVariant.map((run) => run.loadNote) })
    }
  }
  return result
}

const med = (row: Row, read: (p: ProcessRun) => number): number => median(row.runs.map(read))

/** GC pauses during the load, and per request this process served (workers share the requests). */
function gcPauses (row: Row): string {
  const pauseMs = med(row, (p) => p.loaded.gc.pauseMs - p.rest.gc.pauseMs)
  const served = row.role === 'primary' ? 0 : row.requests / row.variant.workers
  return `${Math.round(pauseMs)} ms${served === 0 ? '' : ` (${(pauseMs * 1000 / served).toFixed(2)} µs)`}`
}

function reportRuns (runs: readonly Run[]): string[] {
  const table = rows(runs)
  const title = (row: Row): string => `${row.variant.title}, ${LOAD_NAMES[row.variant.load]} (\`${row.variant.id}\`)`
  const loads = [...new Set(runs.map((run) => `- \`${run.variant.id}\`: ${run.loadNote}`))]
  return [
    '### RSS (MiB): at rest, right after the load, peak, and after 10 s idle',
    '',
    '| configuration | process | requests | RSS at rest | after load | peak | idle again | private at rest | private after load |',
    '|---|---|---|---|---|---|---|---|---|',
    ...table.map((row) => `| ${title(row)} | ${row.role} | ${row.requests.toLocaleString('en-US')} | ${kbMib(med(row, (p) => p.rest.rssKb))} | ${kbMib(med(row, (p) => p.loaded.rssKb))} | ${kbMib(med(row, (p) => p.loaded.peakRssKb))} | ${kbMib(med(row, (p) => p.settled.rssKb))} | ${kbMib(med(row, (p) => p.rest.privateKb))} | ${kbMib(med(row, (p) => p.loaded.privateKb))} |`),
    '',
    '### Right after the load (MiB): where it is',
    '',
    '| configuration | process | V8 heap used / resident | new space | old space | code | large objects | external (ArrayBuffers) | outside the V8 heap | file-backed | threads | scavenges / mark-compacts during the load | GC pauses (per request) |',
    '|---|---|---|---|---|---|---|---|---|---|---|---|---|',
    ...table.filter((row) => row.variant.load !== 'none').map((row) => `| ${title(row)} | ${row.role} | ${mib(med(row, (p) => p.loaded.heapUsed))} / ${mib(med(row, (p) => heapResident(p.loaded)))} | ${mib(med(row, (p) => space(p.loaded, 'new_space', 'new_large_object_space')))} | ${mib(med(row, (p) => space(p.loaded, 'old_space')))} | ${mib(med(row, (p) => space(p.loaded, 'code_space', 'code_large_object_space')))} | ${mib(med(row, (p) => space(p.loaded, 'large_object_space')))} | ${mib(med(row, (p) => p.loaded.external))} (${mib(med(row, (p) => p.loaded.arrayBuffers))}) | ${mib(med(row, (p) => p.loaded.anonKb * 1024 - heapResident(p.loaded)))} | ${kbMib(med(row, (p) => p.loaded.rssKb - p.loaded.anonKb))} | ${med(row, (p) => p.loaded.threads)} | ${med(row, (p) => p.loaded.gc.minor - p.rest.gc.minor)} / ${med(row, (p) => p.loaded.gc.major - p.rest.gc.major)} | ${gcPauses(row)} |`),
    '',
    'The loads:',
    '',
    ...loads,
  ]
}

interface ImportRow { readonly label: string, readonly alone: ImportCost, readonly inWorker: ImportCost }

async function measureImports (dist: string): Promise<ImportRow[]> {
  const own = (path: string): string => pathToFileURL(join(dist, path)).href
  // What a gateway worker imports: the gateway (app.js), the verifier and the relayed routes.
  const worker = [own('app.js'), own('auth/credential-verifier.js'), own('workers/relayed-source.js')]
  const modules: Array<[string, readonly string[]]> = [
    ['a gateway worker\'s modules (podgate)', worker],
    ['admin server (podgate, fastify)', [own('gateway/admin.js')]],
    ['EndpointSlice discovery (podgate, @kubernetes/client-node)', [own('discovery/kubernetes.js')]],
    ['provisioner (podgate)', [own('controller/provisioner.js'), own('workloads/gateway-plugin.js')]],
    ['OpenID Connect login (podgate, openid-client)', [own('auth/oidc-login.js')]],
    ['span export (podgate, OpenTelemetry SDK)', [own('tracing/otel.js')]],
    ...['@kubernetes/client-node', 'fastify', 'undici', 'jose', 'openid-client', 'prom-client', 'pino', 'yaml', 'ws', 'lru-cache', 'oidc-provider'].map((name): [string, readonly string[]] => [name, [name]]),
  ]
  const result: ImportRow[] = []
  for (const [label, specifiers] of modules) {
    result.push({ label, alone: await importCost(REPO, specifiers), inWorker: await importCost(REPO, specifiers, worker) })
  }
  return result
}

function reportImports (imports: readonly ImportRow[]): string[] {
  const bare = imports[0]!.alone.before
  const grown = (cost: ImportCost, read: (point: ImportCost['after']) => number): number => read(cost.after) - read(cost.before)
  return [
    `### Import cost (MiB), each in a fresh process after a full GC; Node alone: RSS ${kbMib(bare.rssKb)}, private ${kbMib(bare.privateKb)}, heap ${mib(bare.heapUsed)}`,
    '',
    '| module | RSS | private | V8 heap | on top of a gateway worker\'s modules: RSS | private | V8 heap |',
    '|---|---|---|---|---|---|---|',
    ...imports.map(({ label, alone, inWorker }) => `| ${label} | +${kbMib(grown(alone, (p) => p.rssKb))} | +${kbMib(grown(alone, (p) => p.privateKb))} | +${mib(grown(alone, (p) => p.heapUsed))} | +${kbMib(grown(inWorker, (p) => p.rssKb))} | +${kbMib(grown(inWorker, (p) => p.privateKb))} | +${mib(grown(inWorker, (p) => p.heapUsed))} |`),
  ]
}

interface Check { readonly name: string, readonly target: string, readonly measured: string, readonly ok: boolean }

function checks (runs: readonly Run[]): Check[] {
  const result: Check[] = []
  for (const row of rows(runs)) {
    if (row.variant.goal !== true || row.role === 'primary') continue
    const what = row.role === 'worker' ? 'gateway worker' : 'one gateway process (admin port included)'
    for (const [when, read, goal] of [['at rest', (p: ProcessRun) => p.rest, GOAL_REST_MIB], ['after load', (p: ProcessRun) => p.loaded, GOAL_LOADED_MIB]] as const) {
      const rss = med(row, (p) => read(p).rssKb) / 1024
      const own = med(row, (p) => read(p).privateKb) / 1024
      result.push({ name: `${what} RSS ${when}, \`${row.variant.id}\``, target: `≤ ${goal} MiB`, measured: `${rss.toFixed(1)} MiB (private ${own.toFixed(1)} MiB)`, ok: rss <= goal })
    }
  }
  const restOf = (id: string): number | undefined => {
    const of = runs.filter((run) => run.variant.id === id).flatMap((run) => run.processes.map((p) => p.rest.rssKb))
    return of.length === 0 ? undefined : median(of)
  }
  const one = restOf('users-1')
  const many = restOf('users-100k')
  if (one !== undefined && many !== undefined) {
    const perUser = (many - one) * 1024 / (MANY_USERS - 1)
    result.push({ name: `RSS at rest per routable user (${MANY_USERS.toLocaleString('en-US')} users against 1)`, target: `< ${MAX_BYTES_PER_USER} B`, measured: `${Math.round(perUser).toLocaleString('en-US')} B`, ok: perUser < MAX_BYTES_PER_USER })
  }
  return result
}

/** Everything above this line of the results file is written by hand (causes, before and after) and kept. */
const GENERATED_BELOW = '<!-- Everything below is written by node bench/memory.ts on each full run. -->'

function writeResults (generated: string): void {
  const current = existsSync(RESULTS_FILE) ? readFileSync(RESULTS_FILE, 'utf8') : ''
  const kept = current.includes(GENERATED_BELOW) ? current.slice(0, current.indexOf(GENERATED_BELOW)) : '# Memory per gateway process\n\n'
  writeFileSync(RESULTS_FILE, `${kept}${GENERATED_BELOW}\n\n${generated}`)
}

// ---- main

const settings = readSettings()
const processes = new ProcessGroup()
const stop = (): void => { processes.killAllNow() }
process.once('SIGINT', () => { stop(); process.exit(130) })
process.once('SIGTERM', () => { stop(); process.exit(143) })
const work = mkdtempSync(join(tmpdir(), 'podgate-memory-'))
try {
  const log = (line: string): void => { process.stderr.write(`${line}\n`) }
  mkdirSync(join(work, 'build'))
  const dist = await buildDist(processes, join(work, 'build'))
  const selected = settings.only.length === 0 ? VARIANTS : VARIANTS.filter((variant) => settings.only.includes(variant.id))
  const prerequisites = new Prerequisites({ processes, cacheDir: join(process.env.HOME ?? tmpdir(), '.cache', 'podgate', 'bench'), install: false, log })
  const vegeta = await prerequisites.vegeta()
  const runnable = selected.filter((variant) => variant.load !== 'open' || vegeta.ok)
  if (!vegeta.ok) log(`constant-rate runs skipped: ${vegeta.reason}`)
  log('import costs')
  const imports = settings.only.length === 0 ? await measureImports(dist) : []
  const runs: Run[] = []
  for (let round = 1; round <= settings.rounds; round++) {
    for (const variant of runnable) {
      log(`round ${round}/${settings.rounds}: ${variant.id}`)
      runs.push(await runVariant(variant, settings, { processes, dist, work, vegeta: vegeta.ok ? vegeta.value.binary : undefined }))
    }
  }
  const verdicts = checks(runs)
  const lines = [
    `Node ${process.version}, ${(totalmem() / 1024 ** 3).toFixed(1)} GiB of memory${process.constrainedMemory() > 0 && process.constrainedMemory() < totalmem() ? ` (cgroup limit ${(process.constrainedMemory() / 1024 ** 3).toFixed(1)} GiB)` : ', no cgroup limit'}, ${settings.rounds} round(s) per configuration, ${settings.seconds} s of load each; podgate as \`node <flags> dist/main.js serve\` (compiled as the image runs it) with a route file, HS256 tokens of one user (verified-token cache on), its upstream and the load in processes of their own. Medians over rounds (and over workers).`,
    '',
    ...(imports.length === 0 ? [] : [...reportImports(imports), '']),
    ...reportRuns(runs),
    '',
    '| check | target | measured | result |',
    '|---|---|---|---|',
    ...verdicts.map((check) => `| ${check.name} | ${check.target} | ${check.measured} | ${check.ok ? 'PASS' : 'FAIL'} |`),
  ]
  const text = lines.join('\n') + '\n'
  process.stdout.write(text)
  if (settings.only.length === 0) writeResults(`Measured by \`node bench/memory.ts\` (${new Date().toISOString().slice(0, 10)}).\n\n${text}`)
  process.exitCode = verdicts.every((check) => check.ok) ? 0 : 1
} finally {
  await processes.shutdown()
  rmSync(work, { recursive: true, force: true })
}
