// Third-party software the comparison needs, installed at run time (never into the project):
// nginx + the Lua module from Debian's packages, configurable-http-proxy 5 from npm and the
// vegeta load generator built with `go install`, both into a cache directory. Each is checked
// (and installed) at most once per run.
import { existsSync, mkdirSync, mkdtempSync, readFileSync, renameSync, rmSync } from 'node:fs'
import { join } from 'node:path'
import type { ProcessGroup } from './processes.ts'

export type Availability<T> = { readonly ok: true, readonly value: T } | { readonly ok: false, readonly reason: string }

export interface NginxInstall {
  readonly binary: string
  readonly version: string
  /** Absolute paths of the .so files to load_module, in order. */
  readonly modules: readonly string[]
}

export interface ChpInstall {
  /** The CLI script, run with this Node. */
  readonly script: string
  readonly version: string
}

export interface VegetaInstall {
  readonly binary: string
  readonly version: string
}

export interface PrerequisiteOptions {
  readonly processes: ProcessGroup
  /** Where CHP and vegeta are installed, e.g. ~/.cache/podgate/bench. */
  readonly cacheDir: string
  /** Whether missing software may be installed (apt-get needs root). */
  readonly install: boolean
  readonly log: (line: string) => void
}

const NGINX_BINARY = '/usr/sbin/nginx'
const NGINX_MODULES = ['/usr/lib/nginx/modules/ndk_http_module.so', '/usr/lib/nginx/modules/ngx_http_lua_module.so']
const DEBIAN_PACKAGES = ['nginx-light', 'libnginx-mod-http-lua', 'lua-cjson']
const INSTALL_TIMEOUT_MS = 240_000
const CHP_SPEC = 'configurable-http-proxy@5'
export const VEGETA_VERSION = 'v12.13.0'
const VEGETA_MODULE = `github.com/tsenart/vegeta/v12@${VEGETA_VERSION}`

export class Prerequisites {
  readonly #options: PrerequisiteOptions
  #nginx: Promise<Availability<NginxInstall>> | undefined
  #chp: Promise<Availability<ChpInstall>> | undefined
  #vegeta: Promise<Availability<VegetaInstall>> | undefined
  readonly #versions: Record<string, string> = {}

  constructor (options: PrerequisiteOptions) { this.#options = options }

  /** Versions of the third-party proxies found so far, for the report. */
  versions (): Readonly<Record<string, string>> { return { ...this.#versions } }

  async nginx (): Promise<Availability<NginxInstall>> {
    this.#nginx ??= this.#ensureNginx()
    return await this.#nginx
  }

  async chp (): Promise<Availability<ChpInstall>> {
    this.#chp ??= this.#ensureChp()
    return await this.#chp
  }

  async vegeta (): Promise<Availability<VegetaInstall>> {
    this.#vegeta ??= this.#ensureVegeta()
    return await this.#vegeta
  }

  async #ensureNginx (): Promise<Availability<NginxInstall>> {
    let missing = await this.#missingNginxParts()
    if (missing.length > 0 && this.#options.install) {
      const refusal = installRefusal()
      if (refusal !== undefined) return { ok: false, reason: `${missing.join(', ')} not installed and ${refusal}; run: apt-get install -y ${DEBIAN_PACKAGES.join(' ')}` }
      this.#options.log(`installing ${DEBIAN_PACKAGES.join(' ')} with apt-get (missing: ${missing.join(', ')})`)
      const env = { ...process.env, DEBIAN_FRONTEND: 'noninteractive' }
      const install = ['install', '-y', '--no-install-recommends', ...DEBIAN_PACKAGES]
      if ((await this.#run('apt-get', install, env)).code !== 0) {
        await this.#run('apt-get', ['update'], env)
        await this.#run('apt-get', install, env)
      }
      missing = await this.#missingNginxParts()
    }
    if (missing.length > 0) {
      return { ok: false, reason: `${missing.join(', ')} not installed${this.#options.install ? ' (apt-get install failed)' : ' (--no-install)'}; run: apt-get install -y ${DEBIAN_PACKAGES.join(' ')}` }
    }
    const output = (await this.#run(NGINX_BINARY, ['-v'], process.env)).output
    const version = /nginx\/(\S+)/.exec(output)?.[1] ?? 'unknown'
    this.#versions.nginx = version
    return { ok: true, value: { binary: NGINX_BINARY, version, modules: NGINX_MODULES } }
  }

  async #missingNginxParts (): Promise<string[]> {
    const missing = [NGINX_BINARY, ...NGINX_MODULES].filter((path) => !existsSync(path))
    const cjson = await this.#run('dpkg-query', ['-W', '-f=${Status}', 'lua-cjson'], process.env, { quiet: true })
    if (!cjson.output.includes('install ok installed')) missing.push('lua-cjson')
    return missing
  }

  async #ensureChp (): Promise<Availability<ChpInstall>> {
    const prefix = join(this.#options.cacheDir, 'chp-5')
    const packageDir = join(prefix, 'node_modules', 'configurable-http-proxy')
    if (installedVersion(packageDir) === undefined) {
      if (!this.#options.install) return { ok: false, reason: `${CHP_SPEC} is not in ${prefix} (--no-install)` }
      this.#options.log(`installing ${CHP_SPEC} into ${prefix}`)
      const { code } = await this.#run('npm', ['install', '--prefix', prefix, '--no-audit', '--no-fund', '--loglevel=error', CHP_SPEC], process.env)
      if (code !== 0) return { ok: false, reason: `npm install ${CHP_SPEC} failed (exit ${String(code)})` }
    }
    const version = installedVersion(packageDir)
    if (version === undefined) return { ok: false, reason: `${CHP_SPEC} did not install into ${prefix}` }
    this.#versions['configurable-http-proxy'] = version
    return { ok: true, value: { script: join(packageDir, 'bin', 'configurable-http-proxy'), version } }
  }

  /**
   * Built into a scratch directory and renamed into place, so a build that fails or is
   * interrupted never leaves a binary behind that a later run would trust.
   */
  async #ensureVegeta (): Promise<Availability<VegetaInstall>> {
    const dir = join(this.#options.cacheDir, `vegeta-${VEGETA_VERSION}`)
    const binary = join(dir, 'vegeta')
    const install = `GOBIN=${dir} go install ${VEGETA_MODULE}`
    if (!existsSync(binary)) {
      if (!this.#options.install) return { ok: false, reason: `vegeta ${VEGETA_VERSION} is not in ${dir} (--no-install); run: ${install}` }
      this.#options.log(`building vegeta ${VEGETA_VERSION} with go install into ${dir}`)
      mkdirSync(dir, { recursive: true })
      const build = mkdtempSync(join(dir, '.build-'))
      try {
        const env = { ...process.env, GOBIN: build, CGO_ENABLED: '0', GOFLAGS: `${process.env.GOFLAGS ?? ''} -buildvcs=false`.trim() }
        const { code } = await this.#run('go', ['install', '-trimpath', VEGETA_MODULE], env)
        if (code !== 0) return { ok: false, reason: `go install ${VEGETA_MODULE} ${code === null ? 'could not run (is Go on PATH?)' : `failed (exit ${code})`}; run: ${install}` }
        renameSync(join(build, 'vegeta'), binary)
      } finally {
        rmSync(build, { recursive: true, force: true })
      }
    }
    if ((await this.#run(binary, ['-version'], process.env)).code !== 0) return { ok: false, reason: `${binary} does not run; remove it and run: ${install}` }
    this.#versions.vegeta = VEGETA_VERSION
    return { ok: true, value: { binary, version: VEGETA_VERSION } }
  }

  /** Runs a command to completion; never throws (a command that cannot start gets code null). */
  async #run (command: string, args: readonly string[], env: NodeJS.ProcessEnv, options: { quiet?: boolean } = {}): Promise<{ code: number | null, output: string }> {
    try {
      const child = this.#options.processes.spawn(command, command, args, { env })
      const code = await child.finished(INSTALL_TIMEOUT_MS)
      if (code !== 0 && options.quiet !== true) this.#options.log(`${command} ${args.join(' ')} exited with ${String(code)}:\n${child.tail()}`)
      return { code, output: child.tail() }
    } catch (err) {
      if (options.quiet !== true) this.#options.log(`${command}: ${(err as Error).message}`)
      return { code: null, output: '' }
    }
  }
}

function installRefusal (): string | undefined {
  if (process.getuid?.() !== 0) return 'installing needs root'
  if (!existsSync('/usr/bin/apt-get')) return 'apt-get is not available'
  return undefined
}

function installedVersion (packageDir: string): string | undefined {
  try {
    const manifest = JSON.parse(readFileSync(join(packageDir, 'package.json'), 'utf8')) as { version?: unknown }
    return typeof manifest.version === 'string' && manifest.version.startsWith('5.') ? manifest.version : undefined
  } catch {
    return undefined
  }
}
