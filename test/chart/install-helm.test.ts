// scripts/install-helm.sh: a pinned helm, built once from the Go module proxy and cached by
// version; a clear failure when Go is missing.
import t, { type Test } from 'tap'
import { existsSync } from 'node:fs'
import { mkdir, mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { Helm, INSTALL_SCRIPT, installHelm, parseManifests, run, which } from './chart.ts'

const PINNED = /^\s*version="\$\{PODGATE_HELM_VERSION:-(v3\.\d+\.\d+)\}"/m

let helmPath: string

t.before(async () => {
  helmPath = await installHelm(t)
})

async function emptyDir (t: Test): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'podgate-install-helm-'))
  t.teardown(() => rm(dir, { recursive: true, force: true }))
  return dir
}

void t.test('the binary is cached outside the repository, keyed by the pinned version', async (t) => {
  const script = await readFile(INSTALL_SCRIPT, 'utf8')
  const pinned = PINNED.exec(script)?.[1]
  t.ok(pinned, 'the script pins a v3.X.Y version')
  t.ok(helmPath.endsWith(`/helm-${pinned}/helm`), helmPath)
  t.notOk(helmPath.startsWith(join(INSTALL_SCRIPT, '..', '..')), 'not inside the repository')
  const version = await run(helmPath, ['version', '--template', '{{ .Version }}'])
  t.equal(version.stdout, pinned, 'helm reports the pinned version')
})

void t.test('a warm cache answers at once with the same path', async (t) => {
  const started = performance.now()
  const again = await installHelm()
  const elapsedMs = performance.now() - started
  t.equal(again, helmPath)
  t.ok(elapsedMs < 5_000, `warm run took ${elapsedMs.toFixed(0)} ms`)
})

void t.test('helm knows which Kubernetes it was built against (not the 1.20 fallback)', async (t) => {
  const chart = await emptyDir(t)
  await mkdir(join(chart, 'templates'))
  await writeFile(join(chart, 'Chart.yaml'), 'apiVersion: v2\nname: probe\nversion: 0.0.1\n')
  await writeFile(join(chart, 'templates', 'version.yaml'),
    'apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: version\ndata:\n  minor: {{ .Capabilities.KubeVersion.Minor | quote }}\n')
  const helm = await Helm.create(t, helmPath)
  const rendered = await helm.run(['template', 'probe', chart])
  t.equal(rendered.code, 0, rendered.stderr)
  const [configMap] = parseManifests(rendered.stdout) as unknown as [{ data: { minor: string } }]
  t.ok(Number(configMap.data.minor) >= 25, `Kubernetes 1.${configMap.data.minor} satisfies the chart's kubeVersion (>=1.25)`)
})

void t.test('without Go it fails with a message that says so, and leaves no binary', async (t) => {
  const cache = await emptyDir(t)
  const noTools = await emptyDir(t)
  const result = await run(which('bash'), [INSTALL_SCRIPT], { env: { PATH: noTools, HOME: cache, PODGATE_CACHE: cache } })
  t.equal(result.code, 1)
  t.match(result.stderr, /^install-helm: Go is required to build helm v3\.\d+\.\d+ .*'go' is not on PATH/)
  t.equal(result.stdout, '', 'no path printed')
  t.same(await readdir(cache), [], 'nothing cached')
})

void t.test('a malformed version is refused before anything runs', async (t) => {
  const cache = await emptyDir(t)
  const result = await run(which('bash'), [INSTALL_SCRIPT], { env: { ...process.env, PODGATE_CACHE: cache, PODGATE_HELM_VERSION: 'latest' } })
  t.equal(result.code, 1)
  t.match(result.stderr, "install-helm: PODGATE_HELM_VERSION must look like v3.X.Y, got 'latest'")
  t.notOk(existsSync(join(cache, 'helm-latest')))
})
