import t from 'tap'
import { withoutCookie } from '../../src/gateway/headers.ts'

void t.test('withoutCookie drops only the named cookie, every copy of it', (t) => {
  const cases: Array<[string, string]> = [
    ['session=abc', ''],
    ['theme=dark; session=abc', 'theme=dark'],
    ['session=abc; theme=dark; session=def', 'theme=dark'],
    ['xsession=a; session_id=b; sessionx=c', 'xsession=a; session_id=b; sessionx=c'],
    ['theme=dark', 'theme=dark'],
    ['  session = abc ;theme=dark;', 'theme=dark'],
    ['session', ''],
    ['a=1;;b=2; session=x', 'a=1; b=2'],
  ]
  for (const [header, expected] of cases) t.equal(withoutCookie(header, 'session'), expected, JSON.stringify(header))
  t.end()
})
