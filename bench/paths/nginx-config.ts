// nginx.conf for each nginx path. One worker (pinned to the proxy CPU), logs off, every
// temp path inside the run's scratch directory; client keep-alive unbounded, as Node's is.

export type NginxVariant = 'keepalive' | 'lua-variable' | 'lua-keepalive' | 'lua-cached'

export interface NginxConfigOptions {
  readonly variant: NginxVariant
  /** Scratch directory for pid, logs and temp files. */
  readonly dir: string
  readonly port: number
  readonly modules: readonly string[]
  /** Directory holding jwt_dispatch.lua. */
  readonly luaDir: string
  readonly routesFile: string
  readonly secret: string
  readonly upstreamAddress: string
}

export function nginxConfig (options: NginxConfigOptions): string {
  const lua = options.variant !== 'keepalive'
  const initOptions = [
    `secret = ${luaString(options.secret)}`,
    `routes_file = ${luaString(options.routesFile)}`,
    ...(options.variant === 'lua-cached' ? ['cache = "tokens"'] : []),
  ].join(', ')
  return [
    ...(lua ? options.modules.map((module) => `load_module ${module};`) : []),
    'worker_processes 1;',
    `pid ${options.dir}/nginx.pid;`,
    `error_log ${options.dir}/error.log warn;`,
    'events { worker_connections 4096; }',
    'http {',
    '  access_log off;',
    '  keepalive_requests 1000000;',
    '  keepalive_timeout 60s;',
    ...['client_body', 'proxy', 'fastcgi', 'uwsgi', 'scgi'].map((kind) => `  ${kind}_temp_path ${options.dir}/${kind}_temp;`),
    ...(lua
      ? [
          `  lua_package_path ${luaString(`${options.luaDir}/?.lua;;`)};`,
          ...(options.variant === 'lua-cached' ? ['  lua_shared_dict tokens 16m;'] : []),
          `  init_by_lua_block { require("jwt_dispatch").init({ ${initOptions} }) }`,
        ]
      : []),
    ...upstreamBlock(options),
    '  server {',
    `    listen 127.0.0.1:${options.port};`,
    '    location / {',
    ...(lua
      ? [
          '      set $target "";',
          '      set $user "";',
          '      access_by_lua_block { require("jwt_dispatch").access() }',
          '      proxy_set_header X-User-ID $user;',
        ]
      : []),
    '      proxy_http_version 1.1;',
    '      proxy_set_header Connection "";',
    '      proxy_set_header Host $host;',
    '      proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;',
    '      proxy_set_header X-Forwarded-Proto $scheme;',
    '      proxy_set_header X-Forwarded-Host $host;',
    `      proxy_pass ${options.variant === 'lua-variable' ? 'http://$target' : 'http://upstream_pool'};`,
    '    }',
    // WebSocket as nginx documents it, on the path without auth only: the reference for
    // what any proxy hop costs a one-message-in-flight echo.
    ...(lua
      ? []
      : [
          '    location /ws {',
          '      proxy_http_version 1.1;',
          '      proxy_set_header Upgrade $http_upgrade;',
          '      proxy_set_header Connection "upgrade";',
          '      proxy_pass http://upstream_pool;',
          '    }',
        ]),
    '  }',
    '}',
    '',
  ].join('\n')
}

function upstreamBlock (options: NginxConfigOptions): string[] {
  // the original design: a per-request variable, so no upstream block and no keep-alive
  if (options.variant === 'lua-variable') return []
  const peer = options.variant === 'keepalive'
    ? [`    server ${options.upstreamAddress};`]
    // the user's peer is chosen per request, as ingress-nginx's Lua balancer does
    : ['    server 0.0.0.1;', '    balancer_by_lua_block { require("jwt_dispatch").balance() }']
  return ['  upstream upstream_pool {', ...peer, '    keepalive 64;', '    keepalive_requests 1000000;', '  }']
}

function luaString (value: string): string {
  return `"${value.replace(/[\\"]/g, (char) => `\\${char}`).replace(/\n/g, '\\n')}"`
}
