// Child processes of the test cluster: output kept in a log file (printed when something
// fails), bounded waits that fail fast when the process dies, and a stop that escalates
// from SIGTERM to SIGKILL.
import { spawn, type ChildProcess } from 'node:child_process'
import { closeSync, openSync, readFileSync } from 'node:fs'
import { createServer } from 'node:net'
import { setTimeout as sleep } from 'node:timers/promises'

export interface ProcessSpec {
  /** Short name used in errors ("etcd", "kube-apiserver"). */
  readonly name: string
  readonly command: string
  readonly args: readonly string[]
  readonly logFile: string
  readonly env?: NodeJS.ProcessEnv
  readonly cwd?: string
}

export interface Exit {
  readonly code: number | null
  readonly signal: NodeJS.Signals | null
}

const STOP_GRACE_MS = 5_000

export class ClusterProcess {
  readonly name: string
  readonly logFile: string
  readonly child: ChildProcess
  /** Resolves when the process has exited, however it ended. */
  readonly exited: Promise<Exit>
  #exit: Exit | undefined

  private constructor (spec: ProcessSpec, child: ChildProcess, exited: Promise<Exit>) {
    this.name = spec.name
    this.logFile = spec.logFile
    this.child = child
    this.exited = exited.then((exit) => { this.#exit = exit; return exit })
  }

  static start (spec: ProcessSpec): ClusterProcess {
    const log = openSync(spec.logFile, 'a')
    let child: ChildProcess
    try {
      child = spawn(spec.command, [...spec.args], {
        env: spec.env ?? process.env,
        cwd: spec.cwd,
        stdio: ['ignore', log, log],
      })
    } finally {
      closeSync(log)
    }
    const exited = new Promise<Exit>((resolve) => {
      child.once('exit', (code, signal) => { resolve({ code, signal }) })
      // A spawn failure (ENOENT) emits 'error' and never 'exit'.
      child.once('error', () => { resolve({ code: null, signal: null }) })
    })
    return new ClusterProcess(spec, child, exited)
  }

  get running (): boolean {
    return this.#exit === undefined && this.child.exitCode === null && this.child.signalCode === null
  }

  /** The last `lines` lines of the process's output. */
  logTail (lines = 40): string {
    let text: string
    try {
      text = readFileSync(this.logFile, 'utf8')
    } catch {
      return `(no log at ${this.logFile})`
    }
    return text.split('\n').slice(-lines - 1).join('\n')
  }

  /** SIGTERM, then SIGKILL after `graceMs`; resolves once the process is gone. */
  async stop (graceMs = STOP_GRACE_MS): Promise<Exit> {
    if (!this.running) return await this.exited
    this.child.kill('SIGTERM')
    const timer = setTimeout(() => { if (this.running) this.child.kill('SIGKILL') }, graceMs)
    try {
      return await this.exited
    } finally {
      clearTimeout(timer)
    }
  }
}

export interface WaitOptions {
  readonly what: string
  readonly timeoutMs: number
  readonly intervalMs?: number
  /** Fails at once, with its log, when this process exits while waiting. */
  readonly process?: ClusterProcess
}

/**
 * Calls `check` until it returns a value other than undefined, or throws an Error naming
 * `what`, the last failure and the process's log once `timeoutMs` has passed.
 */
export async function waitFor<T> (check: () => Promise<T | undefined>, options: WaitOptions): Promise<T> {
  const { what, timeoutMs, intervalMs = 100, process } = options
  const started = Date.now()
  let last = 'never checked'
  while (true) {
    if (process !== undefined && !process.running) {
      const exit = await process.exited
      throw new Error(`${what}: ${process.name} exited (code ${String(exit.code)}, signal ${String(exit.signal)}) while waiting; its log:\n${process.logTail()}`)
    }
    try {
      const value = await check()
      if (value !== undefined) return value
      last = 'not yet'
    } catch (err) {
      last = err instanceof Error ? err.message : String(err)
    }
    if (Date.now() - started >= timeoutMs) {
      const log = process === undefined ? '' : `\n${process.name} log:\n${process.logTail()}`
      throw new Error(`${what}: not after ${Math.round(timeoutMs / 1000)} s (last: ${last})${log}`)
    }
    await sleep(intervalMs)
  }
}

/** `count` distinct free TCP ports on 127.0.0.1, each held until all are found. */
export async function freePorts (count: number): Promise<number[]> {
  const servers = await Promise.all(Array.from({ length: count }, () => new Promise<ReturnType<typeof createServer>>((resolve, reject) => {
    const server = createServer()
    server.once('error', reject)
    server.listen(0, '127.0.0.1', () => { resolve(server) })
  })))
  const ports = servers.map((server) => (server.address() as { port: number }).port)
  await Promise.all(servers.map((server) => new Promise<void>((resolve) => { server.close(() => { resolve() }) })))
  return ports
}
