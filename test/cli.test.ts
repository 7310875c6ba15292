// The command line as users meet it, through the real `node src/main.ts`: help on stdout with
// exit 0, and every wrong argument or configuration as one line (plus the usage for
// arguments) on stderr with exit 2 — never a stack.
import t from 'tap'
import { explainFailure } from '../src/main.ts'
import { ConfigError } from '../src/errors.ts'
import { ListenError } from '../src/listen.ts'
import { runCli } from './support/serve.ts'

const SECRET = 'a test secret that is at least thirty-two bytes long'
const WITH_SECRET = { PODGATE_JWT_SECRET: SECRET }
const STACK = /^\s+at /m

interface Case {
  readonly args: string[]
  readonly env?: Record<string, string>
  readonly code: number
  /** The whole first line of stderr (or of stdout when `stdout` is set). */
  readonly first: string | RegExp
  /** The usage that follows an argument error on stderr, or that help prints on stdout. */
  readonly usage?: string
  /** The output is on stdout (help); stderr must then be empty. */
  readonly stdout?: boolean
}

const GENERAL = 'usage: podgate <command> [--help]'
const TOKEN = 'usage: podgate token <user> [--ttl 1h]'

const cases: Case[] = [
  { args: ['--help'], code: 0, first: GENERAL, stdout: true },
  { args: ['-h'], code: 0, first: GENERAL, stdout: true },
  { args: ['help'], code: 0, first: GENERAL, stdout: true },
  { args: ['help', 'token'], code: 0, first: TOKEN, stdout: true },
  { args: ['token', '--help'], code: 0, first: TOKEN, stdout: true },
  { args: ['token', 'alice', '--ttl', '-5s', '--help'], code: 0, first: TOKEN, stdout: true },
  { args: ['serve', '--help'], code: 0, first: 'usage: podgate serve', stdout: true },
  { args: ['demo', '-h'], code: 0, first: 'usage: podgate demo [--login]', stdout: true },
  { args: [], code: 2, first: 'podgate: missing command', usage: GENERAL },
  { args: ['bogus'], code: 2, first: 'podgate: unknown command "bogus"', usage: GENERAL },
  { args: ['--bogus'], code: 2, first: 'podgate: unknown option --bogus', usage: GENERAL },
  { args: ['help', 'bogus'], code: 2, first: 'podgate: unknown command "bogus"', usage: GENERAL },
  { args: ['help', 'serve', 'demo'], code: 2, first: 'podgate: expected at most one command, got 2', usage: 'usage: podgate help [command]' },
  { args: ['serve', '--port', '8080'], code: 2, first: 'podgate: unknown option --port', usage: 'usage: podgate serve' },
  { args: ['serve', 'now'], code: 2, first: 'podgate: unexpected argument "now"', usage: 'usage: podgate serve' },
  { args: ['demo', '--workers=2'], code: 2, first: 'podgate: unknown option --workers', usage: 'usage: podgate demo [--login]' },
  { args: ['token', 'alice', '--ttl', '-5s'], env: WITH_SECRET, code: 2, first: /^podgate: Option '--ttl[^']*' argument is ambiguous\. [^\n]*'--ttl=-XYZ'\.$/, usage: TOKEN },
  { args: ['token', 'alice', '--ttl=-5s'], env: WITH_SECRET, code: 2, first: 'podgate: --ttl: expected a duration of at least 1s such as 30m or 12h, got "-5s"', usage: TOKEN },
  { args: ['token', 'alice', '--ttl', '500ms'], env: WITH_SECRET, code: 2, first: 'podgate: --ttl: expected a duration of at least 1s such as 30m or 12h, got "500ms"', usage: TOKEN },
  { args: ['token', 'alice', '--ttl'], env: WITH_SECRET, code: 2, first: /^podgate: Option '--ttl[^']*' argument missing$/, usage: TOKEN },
  { args: ['token', 'alice', '--user', 'bob'], env: WITH_SECRET, code: 2, first: 'podgate: unknown option --user', usage: TOKEN },
  { args: ['token'], env: WITH_SECRET, code: 2, first: 'podgate: token: missing <user>', usage: TOKEN },
  { args: ['token', 'alice', 'bob'], env: WITH_SECRET, code: 2, first: 'podgate: token: expected one user, got 2: "alice" "bob"', usage: TOKEN },
  { args: ['token', 'Alice!'], env: WITH_SECRET, code: 2, first: 'podgate: "Alice!" is not a valid user id (lowercase letters, digits and \'-\', at most 63)', usage: TOKEN },
  { args: ['token', 'alice'], env: { PODGATE_JWKS_URL: 'https://idp.example/jwks' }, code: 2, first: 'podgate: token needs PODGATE_JWT_SECRET (tokens for public keys come from your identity provider)', usage: TOKEN },
  // Configuration errors: one line naming the variable, no usage (the arguments were right).
  { args: ['token', 'alice'], code: 2, first: /^podgate: PODGATE_JWT_SECRET[^\n]*$/ },
  { args: ['token', 'alice'], env: { PODGATE_JWT_SECRET: 'short' }, code: 2, first: 'podgate: PODGATE_JWT_SECRET: must be at least 32 bytes, got 5' },
  { args: ['serve'], env: { ...WITH_SECRET, PODGATE_PORT: 'eighty' }, code: 2, first: /^podgate: PODGATE_PORT: [^\n]+$/ },
  { args: ['serve'], env: { ...WITH_SECRET, PODGATE_LOCAL_ROUTES: '/nonexistent/routes.json', PODGATE_PORT: '0', PODGATE_ADMIN_PORT: '0', PODGATE_WORKERS: '1' }, code: 2, first: 'podgate: PODGATE_LOCAL_ROUTES: cannot read /nonexistent/routes.json (ENOENT)' },
  { args: ['demo'], env: { PODGATE_JWKS_URL: 'https://idp.example/jwks', PODGATE_PORT: '0', PODGATE_ADMIN_PORT: '0' }, code: 2, first: /^podgate: PODGATE_JWKS_URL: podgate demo signs its own tokens/ },
]

void t.test('the real CLI over good and bad arguments: exit status, where the words go, never a stack', async (t) => {
  for (const c of cases) {
    const name = `podgate ${c.args.join(' ')}`
    const run = await runCli(c.args, c.env)
    t.equal(run.code, c.code, `${name}: exit ${c.code}`)
    const [shown, other] = c.stdout === true ? [run.stdout, run.stderr] : [run.stderr, run.stdout]
    const lines = shown.split('\n')
    if (typeof c.first === 'string') t.equal(lines[0], c.first, `${name}: first line`)
    else t.match(lines[0], c.first, `${name}: first line`)
    if (c.usage !== undefined && c.stdout !== true) {
      t.equal(lines[1], c.usage, `${name}: the usage follows`)
    } else if (c.stdout !== true) {
      t.equal(lines.length, 2, `${name}: one line, nothing else`)
      t.equal(lines[1], '')
    }
    t.equal(other, '', `${name}: nothing on the other stream`)
    t.notMatch(run.stdout + run.stderr, STACK, `${name}: no stack`)
    t.notOk(run.leftBehind, `${name}: nothing left running`)
  }
})

void t.test('podgate token with good arguments prints a token and nothing else', async (t) => {
  const run = await runCli(['token', 'alice', '--ttl', '30m'], WITH_SECRET)
  t.equal(run.code, 0)
  t.match(run.stdout, /^[\w-]+\.[\w-]+\.[\w-]+\n$/)
  t.equal(run.stderr, '')
})

void t.test('explainFailure: expected failures one line; an unexpected one too, its stack only at debug', (t) => {
  const env = {}
  t.same(explainFailure(new ConfigError('PODGATE_PORT', 'expected an integer'), env), { text: 'podgate: PODGATE_PORT: expected an integer\n', code: 2 })
  t.same(explainFailure(new ListenError('cannot listen on 127.0.0.1:1 (PODGATE_PORT): address already in use'), env), {
    text: 'podgate: cannot listen on 127.0.0.1:1 (PODGATE_PORT): address already in use\n', code: 1,
  })
  const unexpected = new Error('HTTP-Code: 500\nMessage: Unknown API Status Code!\nBody: "boom"', { cause: new Error('socket hang up') })
  const plain = explainFailure(unexpected, { PODGATE_LOG_LEVEL: 'info' })
  t.same(plain, { text: 'podgate: HTTP-Code: 500 Message: Unknown API Status Code! Body: "boom"\n', code: 1 }, 'one line, even from a message of several')
  for (const level of ['debug', 'trace']) {
    const verbose = explainFailure(unexpected, { PODGATE_LOG_LEVEL: level })
    t.equal(verbose.code, 1)
    t.ok(verbose.text.startsWith(plain.text), `${level}: the same line first`)
    t.match(verbose.text, STACK, `${level}: then the stack`)
    t.match(verbose.text, /socket hang up/, `${level}: and its cause`)
  }
  t.same(explainFailure('a string', env), { text: 'podgate: a string\n', code: 1 })
  t.end()
})
