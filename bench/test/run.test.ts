import { spawn } from 'node:child_process'
import { once } from 'node:events'
import { mkdtempSync, readFileSync, readdirSync, rmSync } from 'node:fs'
import { connect } from 'node:net'
import { tmpdir } from 'node:os'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'
import t, { type Test } from 'tap'
import type { BenchReport } from '../report.ts'

const runScript = join(dirname(dirname(fileURLToPath(import.meta.url))), 'run.ts')

interface Finished { code: number | null, stdout: string, stderr: string }

function startRun (t: Test, args: readonly string[]): { finished: Promise<Finished>, stderrSoFar: () => string, interrupt: () => void } {
  const child = spawn(process.execPath, [runScript, ...args], { stdio: ['ignore', 'pipe', 'pipe'] })
  let stdout = ''
  let stderr = ''
  child.stdout.setEncoding('utf8').on('data', (chunk: string) => { stdout += chunk })
  child.stderr.setEncoding('utf8').on('data', (chunk: string) => { stderr += chunk })
  const finished = once(child, 'close').then(([code]) => ({ code: code as number | null, stdout, stderr }))
  t.teardown(() => { if (child.exitCode === null) child.kill('SIGKILL') })
  return { finished, stderrSoFar: () => stderr, interrupt: () => { child.kill('SIGINT') } }
}

function scratch (t: Test): string {
  const dir = mkdtempSync(join(tmpdir(), 'bench-run-'))
  t.teardown(() => { rmSync(dir, { recursive: true, force: true }) })
  return dir
}

async function refusesConnections (port: number): Promise<boolean> {
  return await new Promise((resolve) => {
    const socket = connect(port, '127.0.0.1')
    socket.once('connect', () => { socket.destroy(); resolve(false) })
    socket.once('error', () => { resolve(true) })
  })
}

void t.test('--quick --only direct writes the JSON and the markdown, prints the table, exits 0', async (t) => {
  const out = scratch(t)
  const { code, stdout, stderr } = await startRun(t, ['--quick', '--only', 'direct', '--out', out, '--upstream', 'fixed']).finished
  t.equal(code, 0, code === 0 ? 'exits 0' : stderr)
  const [file] = readdirSync(join(out, 'results'))
  t.match(file, /^\d{4}-\d{2}-\d{2}\.json$/)
  const report = JSON.parse(readFileSync(join(out, 'results', file!), 'utf8')) as BenchReport
  t.equal(report.quick, true)
  t.equal(report.upstream, 'bench fixed responder')
  t.same(report.paths.map((path) => [path.id, path.status]), [['direct', 'ok']])
  t.ok(report.paths[0]!.throughput!.rps.median > 100)
  t.equal(report.goals.length, 13)
  t.match(stdout, /\| upstream hit directly \| [\d.]+k? \|/)
  t.equal(readFileSync(join(out, 'RESULTS.md'), 'utf8'), stdout)
  t.match(stderr, /pinning: /)
})

void t.test('bad usage exits 2 with the usage', async (t) => {
  const { code, stderr } = await startRun(t, ['--quick', '--bogus']).finished
  t.equal(code, 2)
  t.match(stderr, /Unknown option '--bogus'[\s\S]*usage: npm run bench/)
})

void t.test('SIGINT stops every process the run started', async (t) => {
  const out = scratch(t)
  const run = startRun(t, ['--quick', '--only', 'direct', '--out', out, '--upstream', 'fixed'])
  const deadline = Date.now() + 20_000
  while (!/▶ direct/.test(run.stderrSoFar()) && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 50))
  const port = Number(/upstream: .* at 127\.0\.0\.1:(\d+)/.exec(run.stderrSoFar())?.[1])
  t.ok(port > 0, 'the upstream was running')
  run.interrupt()
  const { code, stderr } = await run.finished
  t.equal(code, 130)
  t.match(stderr, /SIGINT: stopping every benchmark process/)
  t.ok(await refusesConnections(port), 'the upstream is gone')
})
