// Runs `podgate serve` as a child process (the real CLI, its own heap) and reads the
// addresses it logs on start; runs any podgate command to its end in its own process group.
import { spawn, type ChildProcess } from 'node:child_process'
import { once } from 'node:events'
import { readFileSync } from 'node:fs'
import { createInterface } from 'node:readline'
import { fileURLToPath } from 'node:url'
import { isGroupAlive } from './processes.ts'

export const MAIN = fileURLToPath(new URL('../../src/main.ts', import.meta.url))

/** The environment an in-process primary with forked workers starts from: loopback, port 0, quiet. */
export function primaryEnv (secret: string, extra: Record<string, string> = {}): Record<string, string | undefined> {
  return {
    PATH: process.env.PATH,
    PODGATE_JWT_SECRET: secret,
    PODGATE_HOST: '127.0.0.1',
    PODGATE_PORT: '0',
    PODGATE_ADMIN_PORT: '0',
    PODGATE_ACCESS_LOG: 'false',
    PODGATE_LOG_LEVEL: 'warn',
    ...extra,
  }
}

export interface CliRun {
  readonly code: number | null
  readonly stdout: string
  readonly stderr: string
  /** Whether anything of its process group (forked workers, backends) outlived it. */
  readonly leftBehind: boolean
}

/**
 * Runs `node src/main.ts ...args` to its end in a process group of its own, with only PATH
 * and `env` in its environment. Kills the group and rejects if it runs past `timeoutMs`.
 */
export async function runCli (args: readonly string[], env: Record<string, string> = {}, timeoutMs = 20_000): Promise<CliRun> {
  const child = spawn(process.execPath, [MAIN, ...args], { env: { PATH: process.env.PATH, ...env }, stdio: ['ignore', 'pipe', 'pipe'], detached: true })
  let stdout = ''
  let stderr = ''
  child.stdout?.on('data', (chunk: Buffer) => { stdout += String(chunk) })
  child.stderr?.on('data', (chunk: Buffer) => { stderr += String(chunk) })
  const pgid = child.pid as number
  const killGroup = (): void => { try { process.kill(-pgid, 'SIGKILL') } catch { /* already gone */ } }
  const closed = once(child, 'close')
  const timer = setTimeout(killGroup, timeoutMs)
  const [code, signal] = await once(child, 'exit') as [number | null, NodeJS.Signals | null]
  clearTimeout(timer)
  const leftBehind = isGroupAlive(pgid)
  // A leftover holding the output pipes would keep them open: it goes first, then all output is read.
  killGroup()
  await closed
  if (signal === 'SIGKILL') throw new Error(`podgate ${args.join(' ')} still ran after ${timeoutMs} ms: ${stdout}${stderr}`)
  return { code, stdout, stderr, leftBehind }
}

interface Teardown { teardown (fn: () => unknown): void }

export interface ServeProcess {
  readonly child: ChildProcess
  readonly gatewayUrl: string
  readonly adminUrl: string
  /** stdout lines so far (the JSON log). */
  readonly lines: readonly string[]
  /** Resident set size in bytes, from /proc. */
  rss (): number
  /** Sends SIGTERM and resolves with the exit code. */
  stop (): Promise<number | null>
}

export async function startServe (t: Teardown, env: Record<string, string>): Promise<ServeProcess> {
  const child = spawn(process.execPath, [MAIN, 'serve'], {
    env: { PATH: process.env.PATH, NODE_OPTIONS: process.env.SERVE_NODE_OPTIONS ?? '', PODGATE_HOST: '127.0.0.1', PODGATE_PORT: '0', PODGATE_ADMIN_PORT: '0', PODGATE_ACCESS_LOG: 'false', PODGATE_WORKERS: '1', ...env },
    stdio: ['ignore', 'pipe', process.env.SERVE_STDERR === '1' ? 'inherit' : 'pipe'],
  })
  let stderr = ''
  child.stderr?.on('data', (chunk: Buffer) => { stderr += String(chunk) })
  t.teardown(() => { if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL') })
  const output: string[] = []
  const lines = createInterface({ input: child.stdout! })
  lines.on('line', (line) => { output.push(line) })
  const started = new Promise<{ gateway: string, admin: string }>((resolve, reject) => {
    lines.on('line', (line) => {
      try {
        const entry = JSON.parse(line) as { gateway?: string, admin?: string }
        if (entry.gateway !== undefined && entry.admin !== undefined) resolve({ gateway: entry.gateway, admin: entry.admin })
      } catch { /* not a log line */ }
    })
    child.once('exit', (code) => { reject(new Error(`podgate serve exited (${code}) before listening: ${stderr}`)) })
  })
  const timeout = setTimeout(() => { child.kill('SIGKILL') }, 20_000)
  const { gateway, admin } = await started.finally(() => { clearTimeout(timeout) })
  return {
    child,
    gatewayUrl: gateway,
    adminUrl: admin,
    lines: output,
    rss: () => {
      const status = readFileSync(`/proc/${child.pid}/status`, 'utf8')
      return Number(/VmRSS:\s+(\d+) kB/.exec(status)?.[1]) * 1024
    },
    stop: async () => {
      if (child.exitCode !== null) return child.exitCode
      child.kill('SIGTERM')
      const [code] = await once(child, 'exit') as [number | null]
      return code
    },
  }
}
