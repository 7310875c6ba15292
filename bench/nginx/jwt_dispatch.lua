-- The original design's Lua dispatcher, given the job podgate does: verify an HS256 JWT
-- (bearer or `session` cookie), map its `sub` to the user's upstream, proxy there.
-- HMAC-SHA256 comes from the OpenSSL that nginx links (LuaJIT FFI), because Debian packages
-- neither lua-resty-jwt, lua-resty-hmac nor lua-resty-string.
local ffi = require "ffi"
local cjson = require "cjson.safe"
local base64 = require "ngx.base64"

ffi.cdef [[
typedef struct evp_md_st EVP_MD;
const EVP_MD *EVP_sha256(void);
unsigned char *HMAC(const EVP_MD *evp_md, const void *key, int key_len,
                    const unsigned char *d, size_t n, unsigned char *md, unsigned int *md_len);
]]

local C = ffi.C
local sha256 = C.EVP_sha256()
local digest = ffi.new("unsigned char[32]")
local digest_len = ffi.new("unsigned int[1]")

local _M = {}
local secret, routes, cache

-- opts: secret (string), routes_file (JSON: user -> ["host:port", ...]), cache (shared dict name or nil)
function _M.init(opts)
  secret = opts.secret
  local file = assert(io.open(opts.routes_file, "r"))
  local table_ = assert(cjson.decode(file:read("*a")))
  file:close()
  routes = {}
  for user, addresses in pairs(table_) do
    local address = addresses[1]
    local host, port = address:match("^([^:]+):(%d+)$")
    routes[user] = { address = address, host = host, port = tonumber(port) }
  end
  if opts.cache then cache = ngx.shared[opts.cache] end
end

local function sign(data)
  C.HMAC(sha256, secret, #secret, data, #data, digest, digest_len)
  return base64.encode_base64url(ffi.string(digest, digest_len[0]))
end

local function decode_segment(segment)
  local text = base64.decode_base64url(segment)
  return text and cjson.decode(text)
end

-- Returns the user and the token's expiry, or nil.
local function verify(token)
  local header, payload, signature = token:match("^([%w_-]+)%.([%w_-]+)%.([%w_-]+)$")
  -- a plain comparison, as a quick dispatcher would do (not constant-time)
  if not header or sign(header .. "." .. payload) ~= signature then return nil end
  local h = decode_segment(header)
  if type(h) ~= "table" or h.alg ~= "HS256" then return nil end
  local claims = decode_segment(payload)
  if type(claims) ~= "table" or type(claims.sub) ~= "string" then return nil end
  if type(claims.exp) ~= "number" or claims.exp <= ngx.time() then return nil end
  return claims.sub, claims.exp
end

function _M.access()
  local authorization = ngx.var.http_authorization
  local token = authorization and authorization:match("^[Bb]earer%s+(%S+)$") or ngx.var.cookie_session
  if not token then return ngx.exit(401) end
  local user = cache and cache:get(token)
  if not user then
    local exp
    user, exp = verify(token)
    if not user then return ngx.exit(401) end
    if cache then cache:set(token, user, exp - ngx.time()) end
  end
  local route = routes[user]
  if not route then return ngx.exit(404) end
  ngx.var.user = user
  ngx.var.target = route.address
  ngx.ctx.route = route
end

-- For the keep-alive form: an `upstream` block whose peer is chosen per request.
function _M.balance()
  local balancer = require "ngx.balancer"
  local route = ngx.ctx.route
  local ok, err = balancer.set_current_peer(route.host, route.port)
  if not ok then
    ngx.log(ngx.ERR, "set_current_peer: ", err)
    return ngx.exit(502)
  end
end

return _M
