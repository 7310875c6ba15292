import t from 'tap'
import { nginxConfig } from '../paths/nginx-config.ts'
import type { NginxVariant } from '../paths/nginx-config.ts'

const options = (variant: NginxVariant): Parameters<typeof nginxConfig>[0] => ({
  variant,
  dir: '/tmp/bench/nginx',
  port: 8123,
  modules: ['/usr/lib/nginx/modules/ndk_http_module.so', '/usr/lib/nginx/modules/ngx_http_lua_module.so'],
  luaDir: '/repo/bench/nginx',
  routesFile: '/tmp/bench/routes.json',
  secret: 'a"b\\c',
  upstreamAddress: '127.0.0.1:9000',
})

void t.test('the original design: Lua check, then proxy_pass to a per-request variable (no upstream block)', (t) => {
  const config = nginxConfig(options('lua-variable'))
  t.match(config, 'proxy_pass http://$target;')
  t.notMatch(config, 'upstream upstream_pool')
  t.match(config, 'access_by_lua_block { require("jwt_dispatch").access() }')
  t.match(config, 'load_module /usr/lib/nginx/modules/ndk_http_module.so;\nload_module /usr/lib/nginx/modules/ngx_http_lua_module.so;')
  t.match(config, 'listen 127.0.0.1:8123;')
  t.end()
})

void t.test('keep-alive Lua forms pick the peer in balancer_by_lua and keep upstream connections', (t) => {
  for (const variant of ['lua-keepalive', 'lua-cached'] as const) {
    const config = nginxConfig(options(variant))
    t.match(config, /upstream upstream_pool \{\n\s+server 0\.0\.0\.1;\n\s+balancer_by_lua_block \{ require\("jwt_dispatch"\)\.balance\(\) \}\n\s+keepalive 64;/)
    t.match(config, 'proxy_pass http://upstream_pool;')
    t.match(config, 'proxy_set_header X-User-ID $user;', 'the identity header is always overwritten')
  }
  t.match(nginxConfig(options('lua-cached')), /lua_shared_dict tokens 16m;[\s\S]*cache = "tokens"/)
  t.notMatch(nginxConfig(options('lua-keepalive')), 'lua_shared_dict')
  t.end()
})

void t.test('plain keep-alive nginx: a static upstream, no Lua at all', (t) => {
  const config = nginxConfig(options('keepalive'))
  t.match(config, 'server 127.0.0.1:9000;')
  t.notMatch(config, /lua|load_module/)
  t.match(config, /location \/ws \{[^}]*proxy_set_header Upgrade \$http_upgrade;[^}]*Connection "upgrade";[^}]*proxy_pass http:\/\/upstream_pool;/, 'WebSocket upgrades pass on /ws')
  for (const variant of ['lua-variable', 'lua-keepalive', 'lua-cached'] as const) t.notMatch(nginxConfig(options(variant)), 'location /ws', `${variant}: no path around the token check`)
  t.end()
})

void t.test('strings are quoted for Lua and nginx; logs and temp files stay in the scratch directory', (t) => {
  const config = nginxConfig(options('lua-cached'))
  t.match(config, 'secret = "a\\"b\\\\c"')
  t.match(config, 'pid /tmp/bench/nginx/nginx.pid;')
  t.match(config, 'client_body_temp_path /tmp/bench/nginx/client_body_temp;')
  t.match(config, 'access_log off;')
  t.end()
})

void t.test('auth_request: every request asks the auth service through an internal location, then a keep-alive upstream', (t) => {
  const config = nginxConfig({ ...options('auth-request'), authServiceUrl: 'http://127.0.0.1:9100/auth' })
  t.match(config, /upstream auth_service \{\n\s+server 127\.0\.0\.1:9100;\n\s+keepalive 64;/)
  t.match(config, /upstream upstream_pool \{\n\s+server 127\.0\.0\.1:9000;\n\s+keepalive 64;/)
  t.match(config, /location = \/_external-auth \{\n\s+internal;\n\s+proxy_pass_request_body off;\n\s+proxy_set_header Content-Length "";/)
  t.match(config, 'proxy_set_header X-Original-URL $scheme://$http_host$request_uri;')
  t.match(config, 'proxy_pass http://auth_service/auth;')
  t.match(config, /location \/ \{\n\s+auth_request \/_external-auth;\n\s+auth_request_set \$user \$upstream_http_x_user_id;\n\s+proxy_set_header X-User-ID \$user;/)
  t.match(config, 'proxy_pass http://upstream_pool;')
  t.notMatch(config, /lua|load_module/)
  t.notMatch(config, 'location /ws', 'no path around the auth check')
  t.throws(() => nginxConfig(options('auth-request')), /needs authServiceUrl/)
  t.throws(() => nginxConfig({ ...options('auth-request'), authServiceUrl: 'https://127.0.0.1:9100/auth' }), /must be http:\/\//)
  for (const variant of ['keepalive', 'lua-variable', 'lua-keepalive', 'lua-cached'] as const) t.notMatch(nginxConfig(options(variant)), 'auth_request', `${variant}: no auth service`)
  t.end()
})
