// Runs the pinned helm (built by scripts/install-helm.sh) against charts/podgate and parses
// what it renders. Values go through files in a per-test temporary directory.
import { execFile } from 'node:child_process'
import { existsSync } from 'node:fs'
import { cp, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { delimiter, join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { parseAllDocuments } from 'yaml'

export const REPO_DIR = fileURLToPath(new URL('../../', import.meta.url))
export const CHART_DIR = join(REPO_DIR, 'charts', 'podgate')
export const INSTALL_SCRIPT = join(REPO_DIR, 'scripts', 'install-helm.sh')
export const RELEASE = 'pg'
export const NAMESPACE = 'apps'
export const FULLNAME = 'pg-podgate'

export interface Run {
  readonly code: number
  readonly stdout: string
  readonly stderr: string
}

/** Runs a command to completion without throwing on a non-zero exit. */
export function run (file: string, args: readonly string[], options: { env?: NodeJS.ProcessEnv, timeoutMs?: number } = {}): Promise<Run> {
  return new Promise((resolve, reject) => {
    execFile(file, args, { env: options.env ?? process.env, timeout: options.timeoutMs ?? 60_000, maxBuffer: 16 * 1024 * 1024 }, (err, stdout, stderr) => {
      if (err !== null && typeof err.code !== 'number') {
        reject(new Error(`${file} did not run to completion: ${err.message}`, { cause: err }))
        return
      }
      resolve({ code: err === null ? 0 : Number(err.code), stdout, stderr })
    })
  })
}

/** Finds an executable on the test process's PATH (children may get a different PATH). */
export function which (name: string): string {
  for (const dir of (process.env.PATH ?? '').split(delimiter)) {
    const candidate = join(dir, name)
    if (dir !== '' && existsSync(candidate)) return candidate
  }
  throw new Error(`${name} not found on PATH`)
}

// A cold build is ~2.5 CPU-minutes (1m38s on 2 idle cores, 3m07s on a loaded machine).
const HELM_BUILD_BUDGET_MS = 10 * 60_000
const CHART_FILE_BUDGET_MS = 120_000

/**
 * Builds helm on a cold cache, returns the cached binary at once when warm. `root` is the
 * test file's root tap object: its time limit covers a cold build, then shrinks back.
 */
export async function installHelm (root?: { setTimeout (ms: number): void }): Promise<string> {
  root?.setTimeout(HELM_BUILD_BUDGET_MS + CHART_FILE_BUDGET_MS)
  const result = await run(which('bash'), [INSTALL_SCRIPT], { timeoutMs: HELM_BUILD_BUDGET_MS })
  const path = result.stdout.trim().split('\n').at(-1) ?? ''
  if (result.code !== 0 || !existsSync(path)) {
    throw new Error(`scripts/install-helm.sh failed (exit ${result.code}):\n${result.stderr}`)
  }
  root?.setTimeout(CHART_FILE_BUDGET_MS)
  return path
}

export interface Manifest {
  readonly apiVersion: string
  readonly kind: string
  readonly metadata: { readonly name: string, readonly namespace?: string, readonly labels?: Record<string, string>, readonly annotations?: Record<string, string> }
  readonly [field: string]: unknown
}

/** Parses a multi-document YAML stream; a syntax error in any document throws. */
export function parseManifests (text: string): Manifest[] {
  const manifests: Manifest[] = []
  for (const doc of parseAllDocuments(text)) {
    if (doc.errors.length > 0) throw new Error(`rendered YAML does not parse: ${doc.errors[0]?.message ?? ''}`)
    const value: unknown = doc.toJS()
    if (value === null || value === undefined) continue
    const manifest = value as Manifest
    if (typeof manifest.kind !== 'string' || typeof manifest.apiVersion !== 'string') throw new Error(`rendered document without kind/apiVersion: ${JSON.stringify(value).slice(0, 200)}`)
    manifests.push(manifest)
  }
  return manifests
}

interface Teardown { teardown (fn: () => unknown): void }

export class Helm {
  readonly #bin: string
  readonly #dir: string
  #files = 0

  private constructor (bin: string, dir: string) {
    this.#bin = bin
    this.#dir = dir
  }

  static async create (t: Teardown, bin: string): Promise<Helm> {
    const dir = await mkdtemp(join(tmpdir(), 'podgate-chart-'))
    t.teardown(() => rm(dir, { recursive: true, force: true }))
    return new Helm(bin, dir)
  }

  get workDir (): string { return this.#dir }

  /** helm with HOME-like state kept in the temporary directory, never in the user's config. */
  async run (args: readonly string[]): Promise<Run> {
    const env = { ...process.env, HELM_CACHE_HOME: join(this.#dir, 'cache'), HELM_CONFIG_HOME: join(this.#dir, 'config'), HELM_DATA_HOME: join(this.#dir, 'data') }
    return await run(this.#bin, args, { env })
  }

  async valuesFile (values: unknown): Promise<string> {
    // JSON is YAML that every parser reads alike: helm's YAML 1.1 would turn a plain `off` into false.
    const file = join(this.#dir, `values-${++this.#files}.json`)
    await writeFile(file, JSON.stringify(values))
    return file
  }

  async template (values: unknown = {}, extra: readonly string[] = [], chart = CHART_DIR): Promise<Run> {
    return await this.run(['template', RELEASE, chart, '--namespace', NAMESPACE, '-f', await this.valuesFile(values), ...extra])
  }

  /** Renders and parses; a failed render throws with helm's message. */
  async render (values: unknown = {}, extra: readonly string[] = []): Promise<Manifest[]> {
    const result = await this.template(values, extra)
    if (result.code !== 0) throw new Error(`helm template failed: ${result.stderr}`)
    return parseManifests(result.stdout)
  }

  /** NOTES.txt as an install would print it: only a real install renders it, so it is rendered as a template of a copy of the chart. */
  async notes (values: unknown): Promise<string> {
    const chart = join(this.#dir, `notes-chart-${Math.random().toString(36).slice(2)}`)
    await cp(CHART_DIR, chart, { recursive: true })
    await writeFile(join(chart, 'notes-source.txt'), await readFile(join(CHART_DIR, 'templates', 'NOTES.txt')))
    await writeFile(join(chart, 'templates', 'notes-check.yaml'),
      'apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: notes-check\ndata:\n  notes: {{ tpl (.Files.Get "notes-source.txt") . | quote }}\n')
    const rendered = await this.template(values, ['--show-only', 'templates/notes-check.yaml'], chart)
    if (rendered.code !== 0) throw new Error(rendered.stderr)
    const [configMap] = parseManifests(rendered.stdout) as unknown as [{ data: { notes: string } }]
    return configMap.data.notes
  }

  async lint (values: unknown = {}): Promise<Run> {
    return await this.run(['lint', '--strict', CHART_DIR, '--namespace', NAMESPACE, '-f', await this.valuesFile(values)])
  }
}

export function all (manifests: readonly Manifest[], kind: string): Manifest[] {
  return manifests.filter((m) => m.kind === kind)
}

/** The one manifest of `kind`; throws when there is none or several. */
export function only<T = Manifest> (manifests: readonly Manifest[], kind: string): T & Manifest {
  const found = all(manifests, kind)
  if (found.length !== 1) throw new Error(`expected exactly one ${kind}, rendered ${found.length}`)
  return found[0] as T & Manifest
}

// The parts of the Kubernetes types the tests read.
export interface EnvVar {
  name: string
  value?: string
  valueFrom?: { secretKeyRef?: { name: string, key: string }, fieldRef?: { fieldPath: string }, configMapKeyRef?: { name: string, key: string } }
}
export interface Probe { httpGet?: { path: string, port: string | number } }
export interface Container {
  name: string
  image: string
  args?: string[]
  env?: EnvVar[]
  ports?: { name: string, containerPort: number }[]
  livenessProbe?: Probe
  readinessProbe?: Probe
  securityContext?: unknown
  volumeMounts?: { name: string, mountPath: string, readOnly?: boolean }[]
}
export interface PodSpec {
  containers: Container[]
  serviceAccountName?: string
  enableServiceLinks?: boolean
  terminationGracePeriodSeconds?: number
  securityContext?: Record<string, unknown>
  volumes?: { name: string, configMap?: { name: string }, emptyDir?: unknown }[]
  topologySpreadConstraints?: { maxSkew: number, topologyKey: string, whenUnsatisfiable: string, labelSelector: { matchLabels: Record<string, string> } }[]
}
export interface Deployment {
  spec: { replicas?: number, selector: { matchLabels: Record<string, string> }, template: { metadata: { labels: Record<string, string> }, spec: PodSpec } }
}
export interface PolicyRule { apiGroups: string[], resources: string[], verbs: string[] }

export function podgateContainer (deployment: Deployment): Container {
  const container = deployment.spec.template.spec.containers.find((c) => c.name === 'podgate')
  if (container === undefined) throw new Error('no container named podgate')
  return container
}

export function envVar (container: Container, name: string): EnvVar | undefined {
  return container.env?.find((e) => e.name === name)
}

/** What the tests' kubelet puts in metadata.name, and an existingSecret they resolve. */
export const POD_NAME = 'podgate-7d9f8-x2x4q'
export const EXISTING_SECRET = { name: 'podgate-keys', jwtSecretKey: 'hmac', adminTokenKey: 'admin' }

/** Rules as sorted "group/resource verb" pairs. */
export function grants (rules: readonly PolicyRule[]): string[] {
  return rules.flatMap((rule) => rule.apiGroups.flatMap((group) => rule.resources.flatMap((resource) =>
    rule.verbs.map((verb) => `${group}/${resource} ${verb}`)))).sort()
}

/** The container's environment as podgate would see it, resolving references like the kubelet. */
export function resolveEnv (container: Container, secrets: Record<string, Record<string, string>>): Record<string, string> {
  const env: Record<string, string> = {}
  for (const item of container.env ?? []) {
    const from = item.valueFrom
    if (item.value !== undefined) env[item.name] = item.value
    else if (from?.fieldRef?.fieldPath === 'metadata.namespace') env[item.name] = NAMESPACE
    else if (from?.fieldRef?.fieldPath === 'metadata.name') env[item.name] = POD_NAME
    else if (from?.secretKeyRef !== undefined) {
      const value = secrets[from.secretKeyRef.name]?.[from.secretKeyRef.key]
      if (value === undefined) throw new Error(`${item.name}: Secret ${from.secretKeyRef.name} has no key ${from.secretKeyRef.key}`)
      env[item.name] = value
    } else throw new Error(`${item.name}: unexpected env source ${JSON.stringify(item)}`)
  }
  return env
}

/** The chart's Secrets by name, plus EXISTING_SECRET as a user would have made it. */
export function renderedSecrets (manifests: readonly Manifest[]): Record<string, Record<string, string>> {
  const secrets: Record<string, Record<string, string>> = { [EXISTING_SECRET.name]: { hmac: 'h'.repeat(40), admin: 'a'.repeat(24) } }
  for (const secret of all(manifests, 'Secret')) secrets[secret.metadata.name] = (secret as unknown as { stringData: Record<string, string> }).stringData
  return secrets
}
