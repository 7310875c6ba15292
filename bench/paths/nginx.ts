// nginx (Debian's nginx-light + libnginx-mod-http-lua), the system podgate replaces, and
// nginx auth_request asking an auth service on every request (ingress-nginx's auth-url).
import { mkdirSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { startAuthService } from '../auth-service.ts'
import { freePort, waitUntilReady } from '../http-probe.ts'
import { writeRouteFile } from '../route-file.ts'
import { bearer, hs256Key, opaqueToken } from '../tokens.ts'
import { nginxConfig } from './nginx-config.ts'
import type { NginxVariant } from './nginx-config.ts'
import type { BenchPath, Measure } from './types.ts'

const START_TIMEOUT_MS = 10_000

const TITLES: Record<NginxVariant, string> = {
  'keepalive': 'nginx proxy_pass, upstream keep-alive, no auth',
  'lua-variable': 'nginx + Lua, HS256 every request, proxy_pass $variable (original design)',
  'lua-keepalive': 'nginx + Lua, HS256 every request, keep-alive upstream',
  'lua-cached': 'nginx + Lua, HS256 cached in a shared dict, keep-alive upstream',
  'auth-request': 'nginx auth_request: opaque token, the auth service asked on every request (ingress-nginx auth-url), keep-alive upstream',
}

export function nginxPath (variant: NginxVariant, measures: readonly Measure[]): BenchPath {
  return {
    id: `nginx-${variant}`,
    title: TITLES[variant],
    measures,
    async unavailable (context) {
      const nginx = await context.prerequisites.nginx()
      return nginx.ok ? undefined : nginx.reason
    },
    async start (context) {
      const nginx = await context.prerequisites.nginx()
      if (!nginx.ok) throw new Error(nginx.reason)
      const dir = join(context.workDir, `nginx-${variant}`)
      mkdirSync(dir, { recursive: true })
      const routesFile = join(dir, 'routes.json')
      writeRouteFile(routesFile, ['alice'], context.upstream.address)
      const key = hs256Key()
      // auth-request: an opaque token the auth service knows, asked about on every request
      const opaque = variant === 'auth-request' ? opaqueToken() : undefined
      const authService = opaque === undefined ? undefined : await startAuthService(context, nginx.value.binary, `auth-service-${variant}`, { [opaque]: 'alice' })
      const port = await freePort()
      const config = nginxConfig({
        variant,
        dir,
        port,
        modules: nginx.value.modules,
        luaDir: join(context.benchDir, 'nginx'),
        routesFile,
        secret: key.verifier,
        upstreamAddress: context.upstream.address,
        authServiceUrl: authService?.url,
      })
      writeFileSync(join(dir, 'nginx.conf'), config)
      const proxy = context.processes.spawn(`nginx-${variant}`, nginx.value.binary, ['-p', dir, '-c', join(dir, 'nginx.conf'), '-g', 'daemon off;'], { cpus: context.cpus.proxy })
      const baseUrl = `http://127.0.0.1:${port}`
      await waitUntilReady(`${baseUrl}/`, { process: proxy, timeoutMs: START_TIMEOUT_MS, ready: (status) => status > 0 })
      const token = opaque ?? await key.sign('alice', variant)
      return { baseUrl, headerSets: [bearer(token)], proxyPgid: proxy.pid, authService: authService?.probe('per-request') }
    },
  }
}
