import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import t, { type Test } from 'tap'
import { Prerequisites } from '../prerequisites.ts'
import { ProcessGroup } from '../processes.ts'

function cacheWithChp (t: Test, version: string | undefined): string {
  const cacheDir = mkdtempSync(join(tmpdir(), 'bench-prereq-'))
  t.teardown(() => { rmSync(cacheDir, { recursive: true, force: true }) })
  if (version !== undefined) {
    const packageDir = join(cacheDir, 'chp-5', 'node_modules', 'configurable-http-proxy')
    mkdirSync(packageDir, { recursive: true })
    writeFileSync(join(packageDir, 'package.json'), JSON.stringify({ name: 'configurable-http-proxy', version }))
  }
  return cacheDir
}

function prerequisites (cacheDir: string, lines: string[]): Prerequisites {
  return new Prerequisites({ processes: new ProcessGroup(), cacheDir, install: false, log: (line) => { lines.push(line) } })
}

void t.test('CHP 5 already in the cache is used as it is, and its version reported', async (t) => {
  const cacheDir = cacheWithChp(t, '5.9.9')
  const lines: string[] = []
  const found = prerequisites(cacheDir, lines)
  t.same(await found.chp(), { ok: true, value: { script: join(cacheDir, 'chp-5', 'node_modules', 'configurable-http-proxy', 'bin', 'configurable-http-proxy'), version: '5.9.9' } })
  t.same(found.versions(), { 'configurable-http-proxy': '5.9.9' })
  t.same(lines, [], 'nothing installed')
})

void t.test('without CHP 5 and with --no-install the path is skipped with the reason', async (t) => {
  for (const version of [undefined, '4.6.1']) {
    const cacheDir = cacheWithChp(t, version)
    const missing = await prerequisites(cacheDir, []).chp()
    t.same(missing, { ok: false, reason: `configurable-http-proxy@5 is not in ${join(cacheDir, 'chp-5')} (--no-install)` })
  }
})

void t.test('each prerequisite is checked once per run', async (t) => {
  const found = prerequisites(cacheWithChp(t, '5.0.0'), [])
  const [first, second] = await Promise.all([found.chp(), found.chp()])
  t.equal(first, second)
})
