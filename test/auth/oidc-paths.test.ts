// The pure parts of the login's paths: which request targets are podgate's own, where a
// login may return to (never off this host), and the sign-in path for browsers.
import t from 'tap'
import { isReservedPath, safeReturnPath, signInPath } from '../../src/auth/oidc-paths.ts'
import { loadConfig } from '../../src/config.ts'

void t.test('podgate\'s own paths', (t) => {
  const table: Array<[string | undefined, boolean]> = [
    ['/.podgate/login', true], ['/.podgate/callback?code=x', true], ['/.podgate/', true], ['/.podgate', true], ['/.podgate?x', true],
    ['/.podgates', false], ['/.podgate-x/login', false], ['/x/.podgate/login', false], ['/', false], ['/.PODGATE/login', false], [undefined, false],
  ]
  for (const [url, reserved] of table) t.equal(isReservedPath(url), reserved, JSON.stringify(url))
  t.end()
})

void t.test('where a login may return to', (t) => {
  const table: Array<[unknown, string]> = [
    ['/', '/'],
    ['/notebooks/a.ipynb?kernel=1#cell', '/notebooks/a.ipynb?kernel=1#cell'],
    ['/a/./b/../c', '/a/c'],
    ['/caf\u00e9', '/caf%C3%A9'],
    ['/%2e%2e/x', '/x'],
    // Everything else is `/`.
    ['//evil.example', '/'],
    ['///evil.example', '/'],
    ['/\\evil.example', '/'],
    ['\\/evil.example', '/'],
    ['/a\\b', '/'],
    ['https://evil.example/', '/'],
    ['HTTPS://evil.example/', '/'],
    ['javascript:alert(1)', '/'],
    ['%2F%2Fevil.example', '/'],
    ['/%2F%2Fevil.example', '/'],
    ['/%2f/evil.example', '/'],
    ['/%5Cevil.example', '/'],
    ['/..//evil.example', '/'],
    ['/.%2e//evil.example', '/'],
    ['/\t/evil.example', '/'],
    ['/\n/evil.example', '/'],
    ['/ /evil.example', '/'],
    ['/\u0000', '/'],
    ['/.podgate/logout', '/'],
    ['/x/../.podgate/login', '/'],
    ['evil.example', '/'],
    ['', '/'],
    [`/${'a'.repeat(2048)}`, '/'],
    [undefined, '/'],
    [['/a'], '/'],
  ]
  for (const [rd, expected] of table) t.equal(safeReturnPath(rd), expected, JSON.stringify(rd))
  t.end()
})

void t.test('the sign-in path for a browser', (t) => {
  const off = loadConfig({ PODGATE_JWT_SECRET: 'a-secret-of-at-least-thirty-two-bytes!' })
  t.equal(signInPath(off.auth, '/x'), undefined, 'undefined when podgate does not log people in')
  const on = loadConfig({ PODGATE_JWT_SECRET: 'a-secret-of-at-least-thirty-two-bytes!', PODGATE_OIDC_ISSUER: 'https://idp.example', PODGATE_OIDC_CLIENT_ID: 'podgate' })
  t.equal(signInPath(on.auth, '/lab?token=1&x=%2F'), '/.podgate/login?rd=%2Flab%3Ftoken%3D1%26x%3D%252F')
  t.equal(signInPath(on.auth, 'https://podgate.example/lab'), '/.podgate/login?rd=%2F', 'a path, never a URL')
  t.end()
})
