// Third-party proxies the comparison needs, installed at run time (never into the project):
// nginx + the Lua module from Debian's packages, and configurable-http-proxy 5 from npm into
// a cache directory. Each is checked (and installed) at most once per run.
import { existsSync, readFileSync } from 'node:fs'
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

export interface PrerequisiteOptions {
  readonly processes: ProcessGroup
  /** Where CHP is installed, e.g. ~/.cache/podgate/bench. */
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

export class Prerequisites {
  readonly #options: PrerequisiteOptions
  #nginx: Promise<Availability<NginxInstall>> | undefined
  #chp: Promise<Availability<ChpInstall>> | undefined
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
