// Profiles: the named templates a UserWorkload is built from (image, port, command, env,
// resources, an optional volume, and the per-user limits the gateway holds its users to), read
// once at start-up from the PODGATE_PROFILES YAML file.
// Validation is strict: an unknown field or a bad value stops start-up with a ConfigError
// naming the field path, because a typo here would otherwise surface as a broken pod later.
import { readFileSync } from 'node:fs'
import { parseDocument } from 'yaml'
import { ConfigError } from '../errors.ts'
import { defaultBurst, MAX_BURST, MAX_CONCURRENT, parseRate, RATE_EXAMPLES, type ProfileLimits } from '../gateway/rate-limit-config.ts'
import { DNS_SUBDOMAIN, isDnsLabel } from '../kube/labels.ts'

export const PROFILES_VARIABLE = 'PODGATE_PROFILES'
/** Placeholder image of the built-in profile: podgate's own image, which carries the built-in backend. */
export const DEFAULT_WORKLOAD_IMAGE = 'ghcr.io/podgate/podgate:latest'
export const DEFAULT_WORKLOAD_PORT = 8080
export const DEFAULT_MOUNT_PATH = '/data'
export const BUILTIN_PROFILE_NAME = 'default'
/** Set by podgate on every workload container; a profile may not set them. */
export const RESERVED_ENV = Object.freeze(['USER', 'X_USER'])
export const IMAGE_PULL_POLICIES = ['Always', 'IfNotPresent', 'Never'] as const
export type ImagePullPolicy = typeof IMAGE_PULL_POLICIES[number]

export interface EnvVar {
  readonly name: string
  readonly value: string
}

export interface ResourceRequirements {
  readonly requests?: Readonly<Record<string, string>>
  readonly limits?: Readonly<Record<string, string>>
}

export interface StorageProfile {
  /** A Kubernetes quantity, e.g. 10Gi. */
  readonly size: string
  readonly storageClassName?: string
  /** Keep the PVC when the user is deleted (default true): deleting a user never silently drops data. */
  readonly keepOnDelete: boolean
  readonly mountPath: string
  /** Pod fsGroup, so a non-root container can write the volume. */
  readonly fsGroup?: number
}

export interface Profile {
  readonly name: string
  readonly image: string
  readonly imagePullPolicy?: ImagePullPolicy
  /** Container port, named `http`. */
  readonly port: number
  readonly command?: readonly string[]
  readonly args?: readonly string[]
  readonly env: readonly EnvVar[]
  readonly resources?: ResourceRequirements
  /** HTTP path of the readiness probe; a TCP probe on the port when absent. */
  readonly readinessPath?: string
  readonly storage?: StorageProfile
  /** rateLimit, rateBurst, maxConcurrentPerUser: what the gateway applies to this profile's users instead of the global limits. */
  readonly limits?: ProfileLimits
}

export interface Profiles {
  readonly default: Profile
  readonly names: readonly string[]
  /** The named profile; the default one for undefined or ''; undefined for an unknown name. */
  get (name: string | undefined): Profile | undefined
}

/**
 * Used when PODGATE_PROFILES is unset: podgate's image running the built-in backend, so a fresh
 * install works end to end. Kubernetes expands $(USER) from the container's env.
 */
export const BUILTIN_PROFILE: Profile = Object.freeze({
  name: BUILTIN_PROFILE_NAME,
  image: DEFAULT_WORKLOAD_IMAGE,
  port: DEFAULT_WORKLOAD_PORT,
  command: Object.freeze(['node', 'dist/local/backend.js', '--user', '$(USER)', '--port', String(DEFAULT_WORKLOAD_PORT), '--host', '0.0.0.0']),
  env: Object.freeze([]),
  resources: Object.freeze({ requests: Object.freeze({ cpu: '10m', memory: '32Mi' }), limits: Object.freeze({ memory: '128Mi' }) }),
  readinessPath: '/healthz',
})

const ENV_NAME = /^[-._a-zA-Z][-._a-zA-Z0-9]*$/
const RESOURCE_NAME = /^([a-z0-9]([-a-z0-9.]*[a-z0-9])?\/)?[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$/
// A Kubernetes quantity: a decimal number with a binary (Ki…Ei), decimal (n u m k M G T P E) or exponent suffix.
const QUANTITY = /^\+?(\d+(\.\d*)?|\.\d+)([KMGTPE]i|[numkMGTPE]|[eE][+-]?\d+)?$/
const IMAGE = /^[^\s]{1,4096}$/

const PROFILE_FIELDS = ['image', 'imagePullPolicy', 'port', 'command', 'args', 'env', 'resources', 'readinessPath', 'storage', 'rateLimit', 'rateBurst', 'maxConcurrentPerUser', 'default'] as const
const LIST_PROFILE_FIELDS = ['name', ...PROFILE_FIELDS] as const
const STORAGE_FIELDS = ['size', 'storageClassName', 'keepOnDelete', 'mountPath', 'fsGroup'] as const
const FIELD_HINTS: Record<string, string> = {
  volume: 'storage', containerPort: 'port', ports: 'port', readinessProbe: 'readinessPath',
  rate: 'rateLimit', burst: 'rateBurst', maxConcurrent: 'maxConcurrentPerUser',
}

class ProfileSet implements Profiles {
  readonly default: Profile
  readonly names: readonly string[]
  readonly #byName: ReadonlyMap<string, Profile>

  constructor (profiles: readonly Profile[], defaultProfile: Profile) {
    this.#byName = new Map(profiles.map((profile) => [profile.name, profile]))
    this.names = Object.freeze(profiles.map((profile) => profile.name))
    this.default = defaultProfile
  }

  get (name: string | undefined): Profile | undefined {
    if (name === undefined || name === '') return this.default
    return this.#byName.get(name)
  }
}

/** The profiles of a fresh install: only BUILTIN_PROFILE. */
export function builtinProfiles (): Profiles {
  return new ProfileSet([BUILTIN_PROFILE], BUILTIN_PROFILE)
}

/** Reads PODGATE_PROFILES (a file path); the built-in profile when `file` is undefined. Throws ConfigError. */
export function loadProfiles (file: string | undefined, readFile: (path: string) => string = (path) => readFileSync(path, 'utf8')): Profiles {
  if (file === undefined) return builtinProfiles()
  let text: string
  try {
    text = readFile(file)
  } catch (err) {
    throw new ConfigError(PROFILES_VARIABLE, `cannot read ${file} (${(err as NodeJS.ErrnoException).code ?? (err as Error).message})`)
  }
  return parseProfiles(text, file)
}

/**
 * Parses a profiles document. Accepted shapes: a mapping of name → profile (what the Helm chart
 * writes), the same under a single `profiles:` key, or a list of profiles with `name` under
 * `profiles:` (or at the top). The default is the profile marked `default: true`, else the one
 * named "default", else the first.
 */
export function parseProfiles (text: string, source = PROFILES_VARIABLE): Profiles {
  const fail: Fail = (path, problem) => {
    throw new ConfigError(PROFILES_VARIABLE, `${path === '' ? '' : `${path}: `}${problem}`)
  }
  const document = parseDocument(text, { prettyErrors: true, uniqueKeys: true })
  if (document.errors.length > 0) {
    const first = document.errors[0]?.message.split('\n')[0] ?? ''
    fail('', `${source} is not valid YAML: ${first.replace(/:$/, '')}`)
  }
  let root: unknown = document.toJS()
  if (isMapping(root) && Object.keys(root).length === 1 && 'profiles' in root && !('image' in (isMapping(root.profiles) ? root.profiles : {}))) {
    root = root.profiles
  }
  const profiles: Profile[] = []
  const marked: string[] = []
  if (Array.isArray(root)) {
    root.forEach((item: unknown, index) => {
      const path = `profiles[${index}]`
      if (!isMapping(item)) fail(path, `expected a mapping (a profile), got ${describe(item)}`)
      const mapping = item
      const name = mapping.name
      if (!isDnsLabel(name)) fail(`${path}.name`, `expected a profile name (lower-case letters, digits and '-', at most 63), got ${describe(name)}`)
      const profile = readProfile(mapping, String(name), path, LIST_PROFILE_FIELDS, fail)
      if (profiles.some((p) => p.name === profile.name)) fail(`${path}.name`, `duplicate profile name ${JSON.stringify(profile.name)}`)
      profiles.push(profile)
      if (mapping.default === true) marked.push(profile.name)
    })
  } else if (isMapping(root)) {
    for (const [name, item] of Object.entries(root)) {
      const path = `profiles.${name}`
      if (!isDnsLabel(name)) fail(path, 'a profile name must be lower-case letters, digits and \'-\' (at most 63)')
      if (!isMapping(item)) fail(path, `expected a mapping (a profile), got ${describe(item)}`)
      const mapping = item
      profiles.push(readProfile(mapping, name, path, PROFILE_FIELDS, fail))
      if (mapping.default === true) marked.push(name)
    }
  } else if (root === null || root === undefined) {
    fail('', `${source} defines no profiles`)
  } else {
    fail('', `${source}: expected a mapping of profile name → profile, got ${describe(root)}`)
  }
  if (profiles.length === 0) fail('', `${source} defines no profiles`)
  if (marked.length > 1) fail('', `more than one profile is marked default: ${marked.join(', ')}`)
  const chosen = marked[0] ?? (profiles.some((p) => p.name === BUILTIN_PROFILE_NAME) ? BUILTIN_PROFILE_NAME : profiles[0]?.name)
  const defaultProfile = profiles.find((p) => p.name === chosen) ?? BUILTIN_PROFILE
  return new ProfileSet(profiles, defaultProfile)
}

type Fail = (path: string, problem: string) => never

function readProfile (mapping: Record<string, unknown>, name: string, path: string, fields: readonly string[], fail: Fail): Profile {
  checkFields(mapping, path, fields, fail)
  const image = mapping.image
  if (typeof image !== 'string' || !IMAGE.test(image)) fail(`${path}.image`, `expected an image reference such as registry.example.com/app:1.0, got ${describe(image)}`)
  const port = mapping.port ?? DEFAULT_WORKLOAD_PORT
  if (typeof port !== 'number' || !Number.isInteger(port) || port < 1 || port > 65535) fail(`${path}.port`, `expected a port number from 1 to 65535, got ${describe(port)}`)
  const pullPolicy = mapping.imagePullPolicy
  if (pullPolicy !== undefined && !(IMAGE_PULL_POLICIES as readonly unknown[]).includes(pullPolicy)) {
    fail(`${path}.imagePullPolicy`, `expected one of ${IMAGE_PULL_POLICIES.join(', ')}, got ${describe(pullPolicy)}`)
  }
  const readinessPath = mapping.readinessPath
  if (readinessPath !== undefined && (typeof readinessPath !== 'string' || !/^\/\S*$/.test(readinessPath))) {
    fail(`${path}.readinessPath`, `expected an HTTP path starting with /, got ${describe(readinessPath)}`)
  }
  if (mapping.default !== undefined && typeof mapping.default !== 'boolean') fail(`${path}.default`, `expected true or false, got ${describe(mapping.default)}`)
  const command = stringList(mapping.command, `${path}.command`, fail)
  const args = stringList(mapping.args, `${path}.args`, fail)
  const resources = mapping.resources === undefined ? undefined : readResources(mapping.resources, `${path}.resources`, fail)
  const storage = mapping.storage === undefined ? undefined : readStorage(mapping.storage, `${path}.storage`, fail)
  const limits = readLimits(mapping, path, fail)
  return Object.freeze({
    name,
    image: image,
    port: port,
    env: readEnv(mapping.env, `${path}.env`, fail),
    ...(pullPolicy === undefined ? {} : { imagePullPolicy: pullPolicy as ImagePullPolicy }),
    ...(command === undefined ? {} : { command }),
    ...(args === undefined ? {} : { args }),
    ...(resources === undefined ? {} : { resources }),
    ...(readinessPath === undefined ? {} : { readinessPath: readinessPath }),
    ...(storage === undefined ? {} : { storage }),
    ...(limits === undefined ? {} : { limits }),
  })
}

/** rateLimit (`50/s`, or `off`), rateBurst (only beside rateLimit) and maxConcurrentPerUser (`0`: no cap). */
function readLimits (mapping: Record<string, unknown>, path: string, fail: Fail): ProfileLimits | undefined {
  const { rateLimit, rateBurst, maxConcurrentPerUser } = mapping
  if (rateLimit === undefined && rateBurst === undefined && maxConcurrentPerUser === undefined) return undefined
  let rate: ProfileLimits['rate']
  // Helm reads values as YAML 1.1, where a bare off is false.
  if (rateLimit === 'off' || rateLimit === false) {
    if (rateBurst !== undefined) fail(`${path}.rateBurst`, 'has no effect with rateLimit: off')
    rate = null
  } else if (rateLimit !== undefined) {
    const perSecond = typeof rateLimit === 'string' ? parseRate(rateLimit) : undefined
    if (perSecond === undefined) fail(`${path}.rateLimit`, `expected ${RATE_EXAMPLES}, or off, got ${describe(rateLimit)}`)
    const burst = rateBurst ?? defaultBurst(perSecond)
    if (!isIntegerIn(burst, 1, MAX_BURST)) fail(`${path}.rateBurst`, `expected an integer from 1 to ${MAX_BURST}, got ${describe(burst)}`)
    rate = Object.freeze({ perSecond, burst })
  } else if (rateBurst !== undefined) {
    fail(`${path}.rateBurst`, 'has no effect without rateLimit in the same profile')
  }
  if (maxConcurrentPerUser !== undefined && !isIntegerIn(maxConcurrentPerUser, 0, MAX_CONCURRENT)) {
    fail(`${path}.maxConcurrentPerUser`, `expected an integer from 0 (no cap) to ${MAX_CONCURRENT}, got ${describe(maxConcurrentPerUser)}`)
  }
  return Object.freeze({
    ...(rate === undefined ? {} : { rate }),
    ...(maxConcurrentPerUser === undefined ? {} : { maxConcurrent: maxConcurrentPerUser }),
  })
}

function isIntegerIn (value: unknown, min: number, max: number): value is number {
  return typeof value === 'number' && Number.isInteger(value) && value >= min && value <= max
}

function checkFields (mapping: Record<string, unknown>, path: string, fields: readonly string[], fail: Fail): void {
  for (const key of Object.keys(mapping)) {
    if (fields.includes(key)) continue
    const hint = FIELD_HINTS[key]
    fail(`${path}.${key}`, `unknown field${hint === undefined ? '' : ` (did you mean ${hint}?)`}; expected one of ${fields.join(', ')}`)
  }
}

function stringList (value: unknown, path: string, fail: Fail): readonly string[] | undefined {
  if (value === undefined) return undefined
  if (!Array.isArray(value)) fail(path, `expected a list of strings, got ${describe(value)}`)
  const list = value as unknown[]
  list.forEach((item, index) => {
    if (typeof item !== 'string') fail(`${path}[${index}]`, `expected a string (quote numbers and booleans), got ${describe(item)}`)
  })
  return Object.freeze([...list as string[]])
}

function readEnv (value: unknown, path: string, fail: Fail): readonly EnvVar[] {
  if (value === undefined) return Object.freeze([])
  if (!Array.isArray(value)) fail(path, `expected a list of {name, value}, got ${describe(value)}`)
  const seen = new Set<string>()
  return Object.freeze((value as unknown[]).map((item, index) => {
    const itemPath = `${path}[${index}]`
    if (!isMapping(item)) fail(itemPath, `expected {name, value}, got ${describe(item)}`)
    const entry = item
    checkFields(entry, itemPath, ['name', 'value'], fail)
    const name = entry.name
    if (typeof name !== 'string' || !ENV_NAME.test(name)) fail(`${itemPath}.name`, `expected an environment variable name, got ${describe(name)}`)
    if (RESERVED_ENV.includes(name)) fail(`${itemPath}.name`, `${String(name)} is set by podgate to the user id`)
    if (seen.has(name)) fail(`${itemPath}.name`, `duplicate variable ${String(name)}`)
    seen.add(name)
    const envValue = entry.value ?? ''
    if (typeof envValue !== 'string') fail(`${itemPath}.value`, `expected a string (quote numbers and booleans), got ${describe(envValue)}`)
    return Object.freeze({ name: name, value: envValue })
  }))
}

function readQuantity (value: unknown, path: string, fail: Fail): string {
  const text = typeof value === 'number' && Number.isFinite(value) && value >= 0 ? String(value) : value
  if (typeof text !== 'string' || !QUANTITY.test(text)) fail(path, `expected a quantity like 10Gi, 512Mi or 250m, got ${describe(value)}`)
  return text
}

function readResources (value: unknown, path: string, fail: Fail): ResourceRequirements {
  if (!isMapping(value)) fail(path, `expected a mapping with requests and/or limits, got ${describe(value)}`)
  const mapping = value
  checkFields(mapping, path, ['requests', 'limits'], fail)
  const out: Record<string, Readonly<Record<string, string>>> = {}
  for (const section of ['requests', 'limits'] as const) {
    const entries = mapping[section]
    if (entries === undefined) continue
    if (!isMapping(entries)) fail(`${path}.${section}`, `expected a mapping of resource → quantity, got ${describe(entries)}`)
    const quantities: Record<string, string> = {}
    for (const [resource, quantity] of Object.entries(entries)) {
      if (!RESOURCE_NAME.test(resource)) fail(`${path}.${section}.${resource}`, 'not a resource name (cpu, memory, ephemeral-storage, vendor.example/device)')
      quantities[resource] = readQuantity(quantity, `${path}.${section}.${resource}`, fail)
    }
    out[section] = Object.freeze(quantities)
  }
  return Object.freeze(out)
}

function readStorage (value: unknown, path: string, fail: Fail): StorageProfile {
  if (!isMapping(value)) fail(path, `expected a mapping with size (and optionally storageClassName, keepOnDelete, mountPath), got ${describe(value)}`)
  const mapping = value
  checkFields(mapping, path, STORAGE_FIELDS, fail)
  if (mapping.size === undefined) fail(`${path}.size`, 'required: a quantity like 10Gi')
  const size = readQuantity(mapping.size, `${path}.size`, fail)
  if (!/[1-9]/.test(size.replace(/[eE][+-]?\d+$/, ''))) fail(`${path}.size`, `must be more than zero, got ${JSON.stringify(size)}`)
  const storageClassName = mapping.storageClassName
  if (storageClassName !== undefined && (typeof storageClassName !== 'string' || !DNS_SUBDOMAIN.test(storageClassName))) {
    fail(`${path}.storageClassName`, `expected a StorageClass name, got ${describe(storageClassName)}`)
  }
  const keepOnDelete = mapping.keepOnDelete ?? true
  if (typeof keepOnDelete !== 'boolean') fail(`${path}.keepOnDelete`, `expected true or false, got ${describe(keepOnDelete)}`)
  const mountPath = mapping.mountPath ?? DEFAULT_MOUNT_PATH
  if (typeof mountPath !== 'string' || !/^\/[^:]*$/.test(mountPath) || mountPath === '/') fail(`${path}.mountPath`, `expected an absolute path other than /, got ${describe(mountPath)}`)
  const fsGroup = mapping.fsGroup
  if (fsGroup !== undefined && (typeof fsGroup !== 'number' || !Number.isInteger(fsGroup) || fsGroup < 0 || fsGroup > 2_147_483_647)) {
    fail(`${path}.fsGroup`, `expected a group id (a non-negative integer), got ${describe(fsGroup)}`)
  }
  return Object.freeze({
    size,
    keepOnDelete: keepOnDelete,
    mountPath: mountPath,
    ...(storageClassName === undefined ? {} : { storageClassName: storageClassName }),
    ...(fsGroup === undefined ? {} : { fsGroup: fsGroup }),
  })
}

function isMapping (value: unknown): value is Record<string, unknown> {
  return value !== null && typeof value === 'object' && !Array.isArray(value)
}

function describe (value: unknown): string {
  if (value === undefined) return 'nothing'
  if (value === null) return 'null'
  if (Array.isArray(value)) return 'a list'
  if (typeof value === 'object') return 'a mapping'
  const text = JSON.stringify(value)
  return `${typeof value === 'string' ? '' : `${typeof value} `}${text.length > 64 ? `${text.slice(0, 61)}...` : text}`
}
