// The README's commands on a machine whose own `node` is older than podgate needs: npm
// scripts run on the Node that `npm ci` installed (the `node` dev dependency), an older node
// gets one line naming the required version, and `npm test`'s pretest builds only what its
// cache lacks. The older node is a stand-in made from this one, so every machine runs this.
import t, { type Test } from 'tap'
import { spawn } from 'node:child_process'
import { existsSync } from 'node:fs'
import { chmod, copyFile, mkdir, mkdtemp, readFile, rm, symlink, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { basename, delimiter, join } from 'node:path'
import { REPO_DIR, run, which } from '../chart/chart.ts'

const REQUIRE_NODE = join(REPO_DIR, 'scripts', 'require-node.sh')
const PREREQUISITES = join(REPO_DIR, 'scripts', 'test-prerequisites.sh')
const NODE_ENV = join(REPO_DIR, 'scripts', 'node-env.sh')
const OLD_VERSION = '20.20.2'
// Versions nobody builds: the cache directories below are the only ones the builders can find.
const HELM_VERSION = 'v3.99.0'
const KUBE_VERSION = 'v1.99.0'
const DJANGO_VERSION = '5.99.0'

const pkg = JSON.parse(await readFile(join(REPO_DIR, 'package.json'), 'utf8')) as {
  engines: { node: string }
  devDependencies: Record<string, string>
}
const PINNED_NODE = pkg.devDependencies.node ?? ''

async function tempDir (t: Test, name: string): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), `podgate-${name}-`))
  t.teardown(() => rm(dir, { recursive: true, force: true }))
  return dir
}

async function executable (file: string, text: string): Promise<void> {
  await writeFile(file, text)
  await chmod(file, 0o755)
}

/**
 * A directory whose `node` behaves like Node 20 where it matters: it reports v20.20.2 and
 * cannot run a .ts file (ERR_UNKNOWN_FILE_EXTENSION), while JavaScript such as npm still runs.
 */
async function olderNode (t: Test): Promise<string> {
  const dir = await tempDir(t, 'older-node')
  const pretend = join(dir, 'pretend.mjs')
  await writeFile(pretend, `Object.defineProperty(process.versions, 'node', { value: '${OLD_VERSION}' })\n` +
    `Object.defineProperty(process, 'version', { value: 'v${OLD_VERSION}' })\n`)
  await executable(join(dir, 'node'), `#!/bin/sh\nexec '${process.execPath}' --no-experimental-strip-types --import '${pretend}' "$@"\n`)
  return dir
}

/** A fresh shell's environment with `first` ahead of the machine's PATH; no npm_* or tap variables. */
function shellEnv (first: string, extra: Record<string, string> = {}): NodeJS.ProcessEnv {
  return { PATH: `${first}${delimiter}${process.env.PATH ?? ''}`, HOME: process.env.HOME, ...extra }
}

void t.test('the stand-in node is older: it reports v20 and fails on TypeScript as Node 20 does', async (t) => {
  const older = await olderNode(t)
  const version = await run(join(older, 'node'), ['-p', 'process.versions.node'])
  t.equal(version.stdout.trim(), OLD_VERSION)
  const ts = await run(join(older, 'node'), [join(REPO_DIR, 'src', 'main.ts'), '--help'])
  t.not(ts.code, 0)
  t.match(ts.stderr, 'ERR_UNKNOWN_FILE_EXTENSION')
})

void t.test('npm start runs the demo on the installed Node when the PATH\'s node is older', async (t) => {
  const older = await olderNode(t)
  const env = shellEnv(older, { PODGATE_PORT: '0', PODGATE_ADMIN_PORT: '0', PODGATE_LOG_LEVEL: 'warn' })
  // Its own process group: npm, the shell it starts, podgate and the backends stop together.
  const child = spawn('npm', ['start'], { cwd: REPO_DIR, env, detached: true, stdio: ['ignore', 'pipe', 'pipe'] })
  const group = child.pid ?? 0
  const exited = new Promise<number | null>((resolve) => { child.once('exit', (code) => { resolve(code) }) })
  t.teardown(() => { try { process.kill(-group, 'SIGKILL') } catch { /* already gone */ } })
  let stdout = ''
  let stderr = ''
  child.stderr.on('data', (chunk: Buffer) => { stderr += String(chunk) })
  await new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => { reject(new Error(`npm start printed no instructions within 60 s:\n${stdout}\n${stderr}`)) }, 60_000)
    child.stdout.on('data', (chunk: Buffer) => {
      stdout += String(chunk)
      if (stdout.includes('Ctrl-C stops')) { clearTimeout(timer); resolve() }
    })
    void exited.then((code) => { clearTimeout(timer); reject(new Error(`npm start exited (${code}) early:\n${stdout}\n${stderr}`)) })
  })
  t.match(stdout, /^curl -s http:\/\/127\.0\.0\.1:\d+\/ -H 'Authorization: Bearer /m, 'the curl lines to paste')
  const gateway = /podgate demo: gateway (http:\/\/127\.0\.0\.1:\d+)/.exec(stdout)?.[1]
  t.ok(gateway)
  const anonymous = await fetch(`${gateway ?? ''}/`, { signal: AbortSignal.timeout(5_000) })
  await anonymous.body?.cancel()
  t.equal(anonymous.status, 401, 'the gateway answers')
  process.kill(-group, 'SIGTERM')
  await exited
  t.notMatch(stderr, 'ERR_UNKNOWN_FILE_EXTENSION')
})

void t.test('npm scripts find the pinned Node first, whatever the PATH\'s node is', async (t) => {
  t.match(PINNED_NODE, /^\d+\.\d+\.\d+$/, 'the node dev dependency is pinned to one version')
  const older = await olderNode(t)
  const result = await run('npm', ['exec', '--', 'node', '-p', 'process.versions.node + " " + process.execPath'], { env: shellEnv(older) })
  t.equal(result.code, 0, result.stderr)
  const [version, execPath] = result.stdout.trim().split(' ')
  t.equal(version, PINNED_NODE)
  t.equal(execPath, join(REPO_DIR, 'node_modules', 'node', 'bin', 'node'), 'the runtime npm ci installed into node_modules')
})

void t.test('an older node gets one line naming the required version, a fitting one nothing', async (t) => {
  const older = await olderNode(t)
  const refused = await run('sh', [REQUIRE_NODE], { env: shellEnv(older) })
  t.equal(refused.code, 1)
  t.equal(refused.stdout, '')
  t.equal(refused.stderr.trimEnd().split('\n').length, 1, refused.stderr)
  t.match(refused.stderr, `podgate needs Node.js ${pkg.engines.node} (Node 24 LTS), but \`node\` here is v${OLD_VERSION}`)
  t.match(refused.stderr, 'run npm ci')

  const accepted = await run('sh', [REQUIRE_NODE], { env: shellEnv(join(REPO_DIR, 'node_modules', 'node', 'bin')) })
  t.same(accepted, { code: 0, stdout: '', stderr: '' })
})

interface Caches { cache: string, goCalls: string, fakeGo: string }

const FAKE_PROXY = 'https://proxy.example'

/** A cache directory with prebuilt stand-ins for what is listed, and a `go` that logs its calls and fails. */
async function caches (t: Test, built: { helm: boolean, kube: boolean, django?: boolean }): Promise<Caches> {
  const cache = await tempDir(t, 'cache')
  const fakeGo = await tempDir(t, 'fake-go')
  const goCalls = join(fakeGo, 'calls')
  // `go env` answers as a real Go does; every download fails as with an unreachable proxy.
  await executable(join(fakeGo, 'go'), `#!/bin/sh\necho "go $*" >> '${goCalls}'\nif [ "$1" = env ]; then echo '${FAKE_PROXY}'; exit 0; fi\necho "go: the module proxy is unreachable" >&2\nexit 1\n`)
  const fake = '#!/bin/sh\nexit 0\n'
  if (built.helm) {
    await mkdir(join(cache, `helm-${HELM_VERSION}`))
    await executable(join(cache, `helm-${HELM_VERSION}`, 'helm'), fake)
  }
  if (built.kube) {
    await mkdir(join(cache, `k8s-${KUBE_VERSION}`, 'bin'), { recursive: true })
    await writeFile(join(cache, `k8s-${KUBE_VERSION}`, 'versions'), `kubernetes=${KUBE_VERSION}\n`)
    for (const name of ['etcd', 'kube-apiserver', 'kube-controller-manager']) await executable(join(cache, `k8s-${KUBE_VERSION}`, 'bin', name), fake)
  }
  if (built.django === true) {
    await mkdir(join(cache, `django-${DJANGO_VERSION}`, 'venv', 'bin'), { recursive: true })
    await writeFile(join(cache, `django-${DJANGO_VERSION}`, 'versions'), `django=${DJANGO_VERSION}\n`)
    await executable(join(cache, `django-${DJANGO_VERSION}`, 'venv', 'bin', 'python'), fake)
  }
  return { cache, goCalls, fakeGo }
}

// Any executable stands in for the browser: install-chromium.sh only checks that it is there.
const versions = { PODGATE_HELM_VERSION: HELM_VERSION, PODGATE_KUBE_VERSION: KUBE_VERSION, PODGATE_DJANGO_VERSION: DJANGO_VERSION, PODGATE_CHROMIUM: process.execPath }

void t.test('npm test\'s pretest builds nothing and prints nothing when the caches are warm', async (t) => {
  const { cache, goCalls, fakeGo } = await caches(t, { helm: true, kube: true, django: true })
  const older = await olderNode(t)
  // Through npm, as `npm test` runs it, on a machine whose own node is older.
  const result = await run('npm', ['run', '--silent', 'pretest'], { env: shellEnv(`${fakeGo}${delimiter}${older}`, { PODGATE_CACHE: cache, ...versions }) })
  t.same(result, { code: 0, stdout: '', stderr: '' })
  t.notOk(existsSync(goCalls), 'go never ran')
})

const cold = [
  { what: 'helm', built: { helm: false, kube: false }, progress: `install-helm: building helm ${HELM_VERSION} from the Go module proxy (first run only; a few minutes)`, module: `helm.sh/helm/v3@${HELM_VERSION}` },
  { what: 'the Kubernetes control plane', built: { helm: true, kube: false }, progress: `e2e build: building Kubernetes ${KUBE_VERSION} from the Go module proxy (first run only; 10-30 minutes on 2 cores)`, module: `k8s.io/kubernetes@${KUBE_VERSION}` },
]
for (const c of cold) {
  void t.test(`a cold cache: one progress line for ${c.what}, then the build's own reason when it fails`, async (t) => {
    const { cache, goCalls, fakeGo } = await caches(t, c.built)
    const result = await run('bash', [PREREQUISITES], { env: shellEnv(fakeGo, { PODGATE_CACHE: cache, ...versions }) })
    t.equal(result.code, 1)
    t.equal(result.stdout, '')
    t.same(result.stderr.trimEnd().split('\n'), [
      c.progress,
      'go: the module proxy is unreachable',
      `${c.progress.slice(0, c.progress.indexOf(':'))}: could not download ${c.module} from the Go module proxy (${FAKE_PROXY})`,
      `npm test: could not build ${c.what} (see the lines above)`,
    ], 'Go\'s reason, then the build\'s own line naming the module and the proxy')
    t.match(await readFile(goCalls, 'utf8'), `go mod download -json ${c.module}`, 'the build started')
  })
}

void t.test('without Go, a cold cache fails with the line that says Go is required', async (t) => {
  const { cache } = await caches(t, { helm: false, kube: false })
  // Only the tools the scripts use before they look for Go, and the Node running this test.
  const tools = await tempDir(t, 'no-go')
  for (const name of ['bash', 'sh', 'dirname', 'mktemp', 'rm', 'tail', 'wc']) await symlink(which(name), join(tools, name))
  await symlink(process.execPath, join(tools, 'node'))
  const result = await run(which('bash'), [PREREQUISITES], { env: { PATH: tools, HOME: cache, PODGATE_CACHE: cache, ...versions } })
  t.equal(result.code, 1)
  t.same(result.stderr.trimEnd().split('\n'), [
    `install-helm: Go is required to build helm ${HELM_VERSION} from the Go module proxy, but 'go' is not on PATH (install Go 1.26+ from https://go.dev/dl/)`,
    'npm test: could not build helm (see the lines above)',
  ])
})

void t.test('scripts/node-env.sh puts the installed Node first; sourced, a failure returns instead of closing the shell', async (t) => {
  const older = await olderNode(t)
  const installed = await run('bash', ['-c', `cd '${REPO_DIR}' && . scripts/node-env.sh && node -p process.versions.node`], { env: shellEnv(older) })
  t.same(installed, { code: 0, stdout: `${PINNED_NODE}\n`, stderr: '' })

  // A checkout where npm ci has not run yet: nothing to put on PATH.
  const checkout = await tempDir(t, 'checkout')
  await mkdir(join(checkout, 'scripts'))
  for (const file of [NODE_ENV, REQUIRE_NODE]) await copyFile(file, join(checkout, 'scripts', basename(file)))
  await copyFile(join(REPO_DIR, 'package.json'), join(checkout, 'package.json'))
  const script = `cd '${checkout}'; . scripts/node-env.sh; echo "the shell goes on: $?"`
  // PODGATE_CACHE: where an older node-env.sh downloaded Node instead of saying what to do.
  const missing = await run('bash', ['-c', script], { env: shellEnv(older, { PODGATE_CACHE: join(checkout, 'cache') }) })
  t.equal(missing.code, 0)
  t.equal(missing.stdout, 'the shell goes on: 1\n')
  t.match(missing.stderr, `but \`node\` here is v${OLD_VERSION}`)
  t.notOk(existsSync(join(checkout, 'cache')), 'nothing downloaded')
})

void t.test('a build that finds another one running says it is waiting, then uses that build\'s result', async (t) => {
  const cache = await tempDir(t, 'locked-cache')
  const dir = join(cache, `helm-${HELM_VERSION}`)
  await mkdir(dir)
  const lock = join(dir, '.lock')
  const goAhead = join(dir, 'go-ahead')
  // The other build: holds the lock until told to finish, then leaves a helm behind.
  const other = spawn('flock', [lock, 'sh', '-c', `echo locked; while [ ! -e '${goAhead}' ]; do sleep 0.05; done; printf '#!/bin/sh\\nexit 0\\n' > '${dir}/helm'; chmod +x '${dir}/helm'`], { stdio: ['ignore', 'pipe', 'inherit'] })
  t.teardown(() => { other.kill() })
  await new Promise<void>((resolve) => { other.stdout.once('data', () => { resolve() }) })
  const second = spawn('bash', [join(REPO_DIR, 'scripts', 'install-helm.sh')], { env: { ...shellEnv(''), PODGATE_CACHE: cache, PODGATE_HELM_VERSION: HELM_VERSION }, stdio: ['ignore', 'pipe', 'pipe'] })
  let stdout = ''
  let stderr = ''
  second.stdout.on('data', (chunk: Buffer) => { stdout += chunk.toString() })
  const waiting = new Promise<void>((resolve) => {
    second.stderr.on('data', (chunk: Buffer) => {
      stderr += chunk.toString()
      if (stderr.includes('\n')) resolve()
    })
  })
  await waiting
  t.equal(stderr, `install-helm: waiting for another build of helm ${HELM_VERSION} to finish (${dir})\n`, 'one line says why it waits')
  await writeFile(goAhead, '')
  const [code] = await new Promise<[number | null]>((resolve) => { second.once('exit', (exitCode) => { resolve([exitCode]) }) })
  t.equal(code, 0)
  t.equal(stdout, `${dir}/helm\n`, 'and it prints the helm the other build made, building nothing itself')
})
