// nginx.conf for each nginx path. One worker (pinned to the proxy CPU), logs off, every
// temp path inside the run's scratch directory; client keep-alive unbounded, as Node's is.

export type NginxVariant = 'keepalive' | 'lua-variable' | 'lua-keepalive' | 'lua-cached' | 'auth-request'

/** The internal location auth_request asks through, as ingress-nginx names its own. */
const AUTH_LOCATION = '/_external-auth'

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
  /** The auth service's URL (http://host:port/path), for the auth-request variant. */
  readonly authServiceUrl?: string | undefined
}

export function nginxConfig (options: NginxConfigOptions): string {
  const lua = options.variant.startsWith('lua-')
  const auth = options.variant === 'auth-request' ? authService(options.authServiceUrl) : undefined
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
    ...(auth === undefined ? [] : ['  upstream auth_service {', `    server ${auth.address};`, '    keepalive 64;', '    keepalive_requests 1000000;', '  }']),
    '  server {',
    `    listen 127.0.0.1:${options.port};`,
    ...(auth === undefined ? [] : authLocation(auth.path)),
    '    location / {',
    ...(lua
      ? [
          '      set $target "";',
          '      set $user "";',
          '      access_by_lua_block { require("jwt_dispatch").access() }',
          '      proxy_set_header X-User-ID $user;',
        ]
      : []),
    ...(auth === undefined
      ? []
      : [
          `      auth_request ${AUTH_LOCATION};`,
          '      auth_request_set $user $upstream_http_x_user_id;',
          '      proxy_set_header X-User-ID $user;',
        ]),
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
    ...(options.variant !== 'keepalive'
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
  // auth-request routes as an Ingress does: a fixed backend, whoever the user is
  const peer = !options.variant.startsWith('lua-')
    ? [`    server ${options.upstreamAddress};`]
    // the user's peer is chosen per request, as ingress-nginx's Lua balancer does
    : ['    server 0.0.0.1;', '    balancer_by_lua_block { require("jwt_dispatch").balance() }']
  return ['  upstream upstream_pool {', ...peer, '    keepalive 64;', '    keepalive_requests 1000000;', '  }']
}

/**
 * ingress-nginx's auth-url location: the client's headers (Cookie, Authorization) go along,
 * the body does not, and the original URL and method are named. Keep-alive to the service is
 * ingress-nginx's opt-in auth-keepalive (its default opens a connection per request): the
 * faster nginx is the one compared.
 */
function authLocation (path: string): string[] {
  return [
    `    location = ${AUTH_LOCATION} {`,
    '      internal;',
    '      proxy_pass_request_body off;',
    '      proxy_set_header Content-Length "";',
    '      proxy_set_header X-Original-URL $scheme://$http_host$request_uri;',
    '      proxy_set_header X-Original-Method $request_method;',
    '      proxy_http_version 1.1;',
    '      proxy_set_header Connection "";',
    `      proxy_pass http://auth_service${path};`,
    '    }',
  ]
}

function authService (url: string | undefined): { address: string, path: string } {
  if (url === undefined) throw new Error('the auth-request variant needs authServiceUrl')
  const parsed = new URL(url)
  if (parsed.protocol !== 'http:' || parsed.search !== '') throw new Error(`authServiceUrl must be http:// without a query, got ${url}`)
  return { address: parsed.host, path: parsed.pathname }
}

function luaString (value: string): string {
  return `"${value.replace(/[\\"]/g, (char) => `\\${char}`).replace(/\n/g, '\\n')}"`
}
