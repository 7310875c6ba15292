import t from 'tap'
import type { IncomingHttpHeaders } from 'node:http'
import { extractToken } from '../../src/auth/extract.ts'

const MAX = 8192

void t.test('finds the token', (t) => {
  const cases: Array<[string, IncomingHttpHeaders, string | undefined]> = [
    ['bearer', { authorization: 'Bearer abc.def.ghi' }, 'abc.def.ghi'],
    ['bearer scheme in any case', { authorization: 'bEaReR abc' }, 'abc'],
    ['bearer with extra whitespace', { authorization: '  Bearer \t abc  ' }, 'abc'],
    ['cookie alone', { cookie: 'session=tok' }, 'tok'],
    ['cookie among several', { cookie: 'theme=dark; session=tok; lang=en' }, 'tok'],
    ['cookie last, no space after ;', { cookie: 'theme=dark;session=tok' }, 'tok'],
    ['cookie name as a prefix of another', { cookie: 'xsession=a; session=b' }, 'b'],
    ['cookie name with a suffix', { cookie: 'session2=a; session=b' }, 'b'],
    ['cookie name inside a value', { cookie: 'note=session=a; session=b' }, 'b'],
    ['only a look-alike cookie', { cookie: 'xsession=a; session_id=c' }, undefined],
    ['quoted cookie value', { cookie: 'session="tok"' }, 'tok'],
    ['the same cookie twice', { cookie: 'session=same; theme=dark; session=same' }, 'same'],
    ['the same cookie twice, once quoted', { cookie: 'session=same; session="same"' }, 'same'],
    ['empty cookie value', { cookie: 'session=; other=x' }, undefined],
    ['both: authorization wins', { authorization: 'Bearer fromheader', cookie: 'session=fromcookie' }, 'fromheader'],
    ['non-bearer authorization falls back to the cookie', { authorization: 'Basic dXNlcjpwdw==', cookie: 'session=c' }, 'c'],
    ['scheme without a separator is not bearer', { authorization: 'Bearerabc' }, undefined],
    ['empty bearer', { authorization: 'Bearer   ' }, undefined],
    ['none', {}, undefined],
    ['unrelated headers only', { host: 'example.com', accept: '*/*' }, undefined],
  ]
  for (const [name, headers, expected] of cases) t.equal(extractToken(headers, 'session', MAX), expected, name)
  t.end()
})

void t.test('refuses two session cookies with different values: which one came first is the attacker\'s to choose', (t) => {
  for (const cookie of ['session=first; session=second', 'session=a; theme=dark; session=b', 'session=; session=b', 'session=a; session=']) {
    t.throws(() => extractToken({ cookie }, 'session', MAX), { name: 'AuthError', reason: 'ambiguous' }, cookie)
  }
  t.equal(extractToken({ authorization: 'Bearer fromheader', cookie: 'session=a; session=b' }, 'session', MAX), 'fromheader', 'a bearer token is used without reading the cookies')
  t.end()
})

void t.test('uses the configured cookie name', (t) => {
  t.equal(extractToken({ cookie: 'session=a; pg_auth=b' }, 'pg_auth', MAX), 'b')
  t.equal(extractToken({ cookie: 'session=a' }, 'pg_auth', MAX), undefined)
  t.end()
})

void t.test('refuses a token over maxBytes with too_large', (t) => {
  const big = 'a'.repeat(64 * 1024)
  for (const headers of [{ authorization: `Bearer ${big}` }, { cookie: `other=1; session=${big}` }]) {
    t.throws(() => extractToken(headers, 'session', MAX), { name: 'AuthError', reason: 'too_large' })
  }
  t.equal(extractToken({ authorization: `Bearer ${'a'.repeat(MAX)}` }, 'session', MAX)?.length, MAX, 'exactly maxBytes is accepted')
  t.end()
})
