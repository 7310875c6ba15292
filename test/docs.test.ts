// The guides say what podgate does: what a user's pod receives is checked against a real
// gateway, the cookie in every example is the one podgate reads, every PODGATE_* variable a
// guide names exists, and no text points at documents a reader does not have.
import t from 'tap'
import { readdir, readFile } from 'node:fs/promises'
import { join, relative } from 'node:path'
import { fileURLToPath } from 'node:url'
import { request } from 'undici'
import { parse } from 'yaml'
import { DEFAULT_COOKIE_NAME } from '../src/config.ts'
import { startTestGateway } from './support/gateway.ts'

const REPO_DIR = fileURLToPath(new URL('../', import.meta.url))

interface Doc { readonly file: string, readonly text: string }

async function markdownUnder (dir: string): Promise<string[]> {
  const entries = await readdir(join(REPO_DIR, dir), { withFileTypes: true, recursive: true })
  return entries.filter((e) => e.isFile() && e.name.endsWith('.md')).map((e) => relative(REPO_DIR, join(e.parentPath, e.name))).sort()
}

async function load (files: readonly string[]): Promise<Doc[]> {
  return await Promise.all(files.map(async (file) => ({ file, text: await readFile(join(REPO_DIR, file), 'utf8') })))
}

const guides = await load(await markdownUnder('docs'))
const chartTexts = await load(['charts/podgate/values.yaml', 'charts/podgate/templates/NOTES.txt'])
// Everything a reader of the product reads: the guides, both READMEs, the chart's comments.
const readable = [...guides, ...await load(['README.md', 'bench/README.md']), ...chartTexts]

/** Line numbers (1-based) of the lines matching `pattern`, with the line. */
function linesMatching (doc: Doc, pattern: RegExp): string[] {
  return doc.text.split('\n').flatMap((line, i) => pattern.test(line) ? [`${doc.file}:${i + 1}: ${line.trim()}`] : [])
}

/** Prose as sentences: paragraphs unwrapped, table rows and list items on their own. */
function sentences (markdown: string): string[] {
  const units = markdown.split(/\n\s*\n/).flatMap((block) => block.split(/\n(?=\s*(?:\||[-*] |\d+\. ))/)).map((unit) => unit.replace(/\s*\n\s*/g, ' '))
  return units.flatMap((unit) => unit.split(/(?<=[.!?])\s+(?=[A-Z`(])/))
}

// ---- References to design documents the reader never saw ----

const UNSEEN_DOCUMENTS = /\bseeds?\b|\boriginal designs?\b|\btwo original\b|\bdesigns? [AB]\b/i

void t.test('the check for unseen documents catches the old wording', (t) => {
  t.ok(UNSEEN_DOCUMENTS.test('This guide is for platforms built like the two original designs podgate replaces'))
  t.ok(UNSEEN_DOCUMENTS.test('The seeds trusted whatever header reached the dispatcher.'))
  t.ok(UNSEEN_DOCUMENTS.test('`str(user.pk)` for design A'))
  t.notOk(UNSEEN_DOCUMENTS.test('the OpenResty/Lua dispatcher podgate replaces'))
  t.end()
})

void t.test('no doc refers to design documents the reader does not have', (t) => {
  const found = readable.flatMap((doc) => linesMatching(doc, UNSEEN_DOCUMENTS))
  t.same(found, [], 'describe the stack being replaced instead')
  t.end()
})

// ---- What the user's pod receives ----

const POD = String.raw`\b(?:pods?|workloads?|backends?)\b`
const POD_GETS_COOKIE = [
  new RegExp(String.raw`${POD}[^.;:]{0,80}?\b(?:keep|keeps|see|sees|receive|receives|get|gets)\b[^.;:]{0,60}?\bcookie`, 'i'),
  new RegExp(String.raw`\bcookie\b[^.;:]{0,60}?\b(?:reach|reaches|passes|is passed|goes|is forwarded)\b[^.;:]{0,40}?${POD}`, 'i'),
]
const NEGATION = /\b(?:no|not|never|nor|neither|except|removes?|removed|strips?|stripped|other)\b|n't/i

function claimsPodGetsCookie (sentence: string): boolean {
  return POD_GETS_COOKIE.some((pattern) => pattern.test(sentence)) && !NEGATION.test(sentence)
}

void t.test('the cookie-claim check catches the old wording and passes the true one', (t) => {
  t.ok(claimsPodGetsCookie('podgate keeps what users and their pods see (the `X-User-ID` header, the `session` cookie, one workload per user) and replaces the machinery in between.'))
  t.ok(claimsPodGetsCookie('The session cookie reaches the user\'s pod unchanged.'))
  t.notOk(claimsPodGetsCookie('Neither the bearer header nor that cookie reaches the user\'s pod; the pod learns the user from `config.userHeader`.'))
  t.notOk(claimsPodGetsCookie('The old stack passed each request on as the client sent it, so a user\'s pod also received the `session` cookie.'))
  t.end()
})

void t.test('no doc says the user\'s pod keeps or receives the session cookie', (t) => {
  const found = readable.flatMap((doc) => sentences(doc.text).filter(claimsPodGetsCookie).map((s) => `${doc.file}: ${s}`))
  t.same(found, [], 'podgate removes its own cookie (and any bearer Authorization) before the pod')
  t.end()
})

const migration = guides.find((d) => d.file === 'docs/migration.md')?.text ?? ''

interface HeaderRow { readonly sent: [string, string][], readonly absent?: string, readonly received: [string, string][] }

function codeSpans (cell: string): string[] {
  return [...cell.matchAll(/`([^`]+)`/g)].map((m) => m[1] ?? '')
}

function headerPairs (cell: string): [string, string][] {
  return codeSpans(cell).map((span) => {
    const colon = span.indexOf(':')
    if (colon < 1) throw new Error(`expected \`Name: value\`, got \`${span}\``)
    return [span.slice(0, colon).trim(), span.slice(colon + 1).trim()]
  })
}

/** The rows of the "What a user's pod receives" table. */
function podHeaderRows (markdown: string): HeaderRow[] {
  const section = markdown.slice(markdown.indexOf('## What a user\'s pod receives'))
  const table = section.slice(0, section.indexOf('\n\n', section.indexOf('| The client sends')))
  return table.split('\n').filter((line) => line.startsWith('| `')).map((line) => {
    const [, sent = '', received = ''] = line.split('|').map((cell) => cell.trim())
    const absent = /^no `([^`]+)` header$/.exec(received)?.[1]
    return { sent: headerPairs(sent), ...(absent === undefined ? {} : { absent }), received: absent === undefined ? headerPairs(received) : [] }
  })
}

void t.test('docs/migration.md: what a user\'s pod receives is what a real gateway forwards', async (t) => {
  t.match(migration, '## What a user\'s pod receives', 'the guide has the section')
  const user = /verified as user `([^`]+)`/.exec(migration)?.[1]
  t.type(user, 'string', 'the section names the verified user')
  const rows = podHeaderRows(migration)
  t.ok(rows.length >= 5, `the table has its rows (${rows.length})`)
  const chart = parse(await readFile(join(REPO_DIR, 'charts/podgate/values.yaml'), 'utf8')) as { auth: { cookieName: string }, config: { userHeader: string, trustProxy: boolean } }
  t.match(migration, `(\`auth.cookieName: ${chart.auth.cookieName}\`, \`config.userHeader: ${chart.config.userHeader}\`)`, 'the stated defaults are the chart\'s')

  const covers = (sent: RegExp, outcome: (row: HeaderRow) => boolean): boolean => rows.some((row) => row.sent.some(([n, v]) => sent.test(`${n}: ${v}`)) && outcome(row))
  t.ok(covers(/^Authorization: Bearer /i, (row) => row.absent === 'Authorization'), 'a row shows the bearer header removed')
  t.ok(covers(new RegExp(`^Cookie: ${DEFAULT_COOKIE_NAME}=`), (row) => row.absent === 'Cookie'), 'a row shows the session cookie removed')
  t.ok(covers(/^Cookie: .*;/, (row) => row.received.some(([n]) => /^cookie$/i.test(n))), 'a row shows other cookies kept')
  t.ok(covers(/^Authorization: (?!Bearer)/i, (row) => row.received.some(([n]) => /^authorization$/i.test(n))), 'a row shows another Authorization scheme kept')
  t.ok(covers(new RegExp(`^${chart.config.userHeader}: `, 'i'), (row) => row.received.some(([n, v]) => n.toLowerCase() === chart.config.userHeader.toLowerCase() && v === user)), 'a row shows the identity header replaced')

  const gw = await startTestGateway(t, {
    PODGATE_COOKIE_NAME: chart.auth.cookieName,
    PODGATE_USER_HEADER: chart.config.userHeader,
    PODGATE_TRUST_PROXY: String(chart.config.trustProxy),
  })
  await gw.backend(user ?? '')
  const jwt = await gw.token(user ?? '')
  for (const row of rows) {
    const sent = row.sent.map(([name, value]) => [name, value.replaceAll('<jwt>', jwt)] as const)
    t.ok(sent.some(([n, v]) => (/^authorization$/i.test(n) && /^Bearer /i.test(v)) || (/^cookie$/i.test(n) && v.includes(`${chart.auth.cookieName}=${jwt}`))), `${JSON.stringify(row.sent)} carries a token`)
    const res = await request(gw.url, { headers: sent.flat() })
    const seen = (await res.body.json() as { headers: Record<string, string> }).headers
    t.equal(res.statusCode, 200, JSON.stringify(row.sent))
    if (row.absent !== undefined) t.equal(seen[row.absent.toLowerCase()], undefined, `${JSON.stringify(row.sent)}: no ${row.absent} header`)
    for (const [name, value] of row.received) t.equal(seen[name.toLowerCase()], value, `${JSON.stringify(row.sent)}: ${name}: ${value}`)
  }
})

// ---- The cookie name ----

const COOKIE_NAMES = [
  /`([^`\s]+)` cookie\b/g, // the `session` cookie
  /\bcookie (?:named |called )?`([^`\s]+)`/gi, // the cookie `session`
  /cookieName`?\s+(?:to|is|=|\|)\s+[^`.\n]{0,30}?`([A-Za-z0-9_-]+)`/g, // set `auth.cookieName` to `x`; table cells
  /cookieName:\s*["']?([A-Za-z0-9_-]+)/g, // values.yaml and values examples
  /PODGATE_COOKIE_NAME`?\s*(?:=|\|)\s*`?([A-Za-z0-9_-]+)/g, // PODGATE_COOKIE_NAME=x, README table
  /set_cookie\(\s*["']([^"']+)["']/g, // Django
]
// A cookie that carries a token in an example request: `session=<jwt>`, `session=$TOKEN`.
const TOKEN_COOKIE = /\b([A-Za-z0-9_-]+)=(?:<jwt>|<token>|\$\{?[A-Z][A-Z0-9_]*\}?)/g

function cookieNames (text: string): string[] {
  const unwrapped = text.replace(/\s*\n\s*(?:#\s*)?/g, ' ')
  const names = COOKIE_NAMES.flatMap((pattern) => [...unwrapped.matchAll(pattern)].map((m) => m[1] ?? ''))
  const tokenCookies = text.split('\n').filter((line) => /cookie/i.test(line)).flatMap((line) => [...line.matchAll(TOKEN_COOKIE)].map((m) => m[1] ?? ''))
  return [...names, ...tokenCookies].filter((name) => !name.startsWith('PODGATE_'))
}

void t.test('the cookie-name check finds names in every form the docs use', (t) => {
  t.same(cookieNames('During the transition set `auth.cookieName` to a new name (for example\n   `podgate_session`)'), ['podgate_session'])
  t.same(cookieNames('response.set_cookie("session", token)'), ['session'])
  t.same(cookieNames('curl --cookie "sid=$BOB" http://127.0.0.1:8080/'), ['sid'])
  t.same(cookieNames('| `Cookie: theme=dark; session=<jwt>` | `Cookie: theme=dark` |'), ['session'])
  t.same(cookieNames('| `auth.cookieName` | `session` | Cookie that holds the token |'), ['session'])
  t.same(cookieNames('set `auth.cookieName` (`PODGATE_COOKIE_NAME`) to it'), [])
  t.end()
})

void t.test('every cookie name in the docs and the chart is the one podgate reads by default', (t) => {
  const wrong: string[] = []
  let found = 0
  for (const doc of readable) {
    for (const name of cookieNames(doc.text)) {
      found++
      if (name !== DEFAULT_COOKIE_NAME) wrong.push(`${doc.file}: ${name}`)
    }
  }
  t.same(wrong, [], `the examples use ${DEFAULT_COOKIE_NAME} (DEFAULT_COOKIE_NAME in src/config.ts); another name is set with auth.cookieName / PODGATE_COOKIE_NAME`)
  for (const file of ['docs/kubernetes.md', 'docs/migration.md', 'README.md', 'charts/podgate/values.yaml']) {
    const doc = readable.find((d) => d.file === file)
    t.ok(doc !== undefined && cookieNames(doc.text).length > 0, `${file} names the cookie`)
  }
  t.ok(found > 0)
  t.end()
})

void t.test('the guides say how to set another cookie name', (t) => {
  for (const file of ['docs/kubernetes.md', 'docs/migration.md']) {
    const text = guides.find((d) => d.file === file)?.text ?? ''
    t.match(text, '`auth.cookieName`', `${file} names the value`)
    t.match(text, 'PODGATE_COOKIE_NAME', `${file} names the variable`)
  }
  t.end()
})

// ---- PODGATE_* variables ----

/** loadConfig and the modules it reads variables with (test/chart/render.test.ts lists the same). */
const CONFIG_MODULES = ['src/config.ts', 'src/auth/credential-config.ts', 'src/auth/oidc-config.ts', 'src/gateway/rate-limit-config.ts', 'src/auth/identity-config.ts', 'src/tracing/config.ts']

/** Variables podgate reads, the README's tables, and error codes (which share the prefix). */
async function knownNames (): Promise<Set<string>> {
  const config = (await Promise.all(CONFIG_MODULES.map((file) => readFile(join(REPO_DIR, file), 'utf8')))).join('\n')
  const readme = await readFile(join(REPO_DIR, 'README.md'), 'utf8')
  const errors = await readFile(join(REPO_DIR, 'src/errors.ts'), 'utf8')
  return new Set([
    ...config.match(/PODGATE_[A-Z0-9_]+/g) ?? [],
    ...readme.split('\n').filter((line) => line.startsWith('|')).flatMap((line) => line.match(/PODGATE_[A-Z0-9_]+/g) ?? []),
    ...[...errors.matchAll(/code(?:: string)? = '(PODGATE_[A-Z0-9_]+)'/g)].map((m) => m[1] ?? ''),
  ])
}

/** A variable given to a script on the command line the doc shows, and read by that script. */
async function readByScriptItRuns (doc: Doc, name: string): Promise<boolean> {
  for (const line of doc.text.split('\n').filter((l) => l.includes(`${name}=`))) {
    const script = /\b(?:bash|sh|node)\s+(\S+)/.exec(line)?.[1]
    if (script === undefined) continue
    const source = await readFile(join(REPO_DIR, script), 'utf8').catch(() => '')
    if (source.includes(name)) return true
  }
  return false
}

void t.test('every PODGATE_* variable a guide names exists', async (t) => {
  const known = await knownNames()
  t.ok(known.has('PODGATE_COOKIE_NAME') && known.has('PODGATE_NO_WORKLOAD'), 'the known names were read')
  const unknown: string[] = []
  for (const doc of guides) {
    for (const name of new Set(doc.text.match(/PODGATE_[A-Z0-9_]+/g) ?? [])) {
      if (!known.has(name) && !await readByScriptItRuns(doc, name)) unknown.push(`${doc.file}: ${name}`)
    }
  }
  t.same(unknown, [], 'not in src/config.ts, the README tables, or the script the guide runs')
  t.notOk(await readByScriptItRuns({ file: 'x', text: 'PODGATE_NOPE=1 bash test/e2e/cluster/build.sh' }, 'PODGATE_NOPE'), 'a script that does not read it does not count')
})
