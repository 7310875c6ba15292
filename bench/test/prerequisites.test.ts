import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import t, { type Test } from 'tap'
import { Prerequisites, VEGETA_VERSION } from '../prerequisites.ts'
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

/** A cache holding a stand-in vegeta that exits with `code` when asked its version. */
function cacheWithVegeta (t: Test, code: number | undefined): string {
  const cacheDir = cacheWithChp(t, undefined)
  if (code !== undefined) {
    const dir = join(cacheDir, `vegeta-${VEGETA_VERSION}`)
    mkdirSync(dir, { recursive: true })
    writeFileSync(join(dir, 'vegeta'), `#!/bin/sh\nexit ${code}\n`, { mode: 0o755 })
  }
  return cacheDir
}

void t.test('vegeta already built into the versioned cache directory is used, and its version reported', async (t) => {
  const cacheDir = cacheWithVegeta(t, 0)
  const lines: string[] = []
  const found = prerequisites(cacheDir, lines)
  t.same(await found.vegeta(), { ok: true, value: { binary: join(cacheDir, 'vegeta-v12.13.0', 'vegeta'), version: 'v12.13.0' } })
  t.same(found.versions(), { vegeta: 'v12.13.0' })
  t.same(lines, [], 'nothing built')
})

void t.test('without vegeta and with --no-install, the reason names the go install command', async (t) => {
  const cacheDir = cacheWithVegeta(t, undefined)
  const dir = join(cacheDir, 'vegeta-v12.13.0')
  t.same(await prerequisites(cacheDir, []).vegeta(), { ok: false, reason: `vegeta v12.13.0 is not in ${dir} (--no-install); run: GOBIN=${dir} go install github.com/tsenart/vegeta/v12@v12.13.0` })
})

void t.test('a vegeta in the cache that does not run is not used', async (t) => {
  const cacheDir = cacheWithVegeta(t, 3)
  const missing = await prerequisites(cacheDir, []).vegeta()
  t.match(missing, { ok: false, reason: /vegeta-v12\.13\.0\/vegeta does not run; remove it and run: GOBIN=.* go install github\.com\/tsenart\/vegeta\/v12@v12\.13\.0$/ })
})
