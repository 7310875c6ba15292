// nginx (Debian's nginx-light + libnginx-mod-http-lua), the system podgate replaces.
import { mkdirSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { freePort, waitUntilReady } from '../http-probe.ts'
import { writeRouteFile } from '../route-file.ts'
import { bearer, hs256Key } from '../tokens.ts'
import { nginxConfig } from './nginx-config.ts'
import type { NginxVariant } from './nginx-config.ts'
import type { BenchPath, Measure } from './types.ts'

const START_TIMEOUT_MS = 10_000

const TITLES: Record<NginxVariant, string> = {
  'keepalive': 'nginx proxy_pass, upstream keep-alive, no auth',
  'lua-variable': 'nginx + Lua, HS256 every request, proxy_pass $variable (original design)',
  'lua-keepalive': 'nginx + Lua, HS256 every request, keep-alive upstream',
  'lua-cached': 'nginx + Lua, HS256 cached in a shared dict, keep-alive upstream',
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
      })
      writeFileSync(join(dir, 'nginx.conf'), config)
      const proxy = context.processes.spawn(`nginx-${variant}`, nginx.value.binary, ['-p', dir, '-c', join(dir, 'nginx.conf'), '-g', 'daemon off;'], { cpus: context.cpus.proxy })
      const baseUrl = `http://127.0.0.1:${port}`
      await waitUntilReady(`${baseUrl}/`, { process: proxy, timeoutMs: START_TIMEOUT_MS, ready: (status) => status > 0 })
      return { baseUrl, headerSets: [bearer(await key.sign('alice', variant))], proxyPgid: proxy.pid }
    },
  }
}
