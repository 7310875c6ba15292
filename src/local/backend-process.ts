// One local backend process: spawned on 127.0.0.1 with port 0, and known to be serving once
// its first stdout line reports the address it listens on (the local stand-in for a pod
// becoming ready). The driver decides when to start, restart and stop them.
import type { spawn as spawnProcess, ChildProcess } from 'node:child_process'
import type { Clock } from '../clock.ts'
import { WorkloadFailedError, WorkloadNotFoundError } from '../errors.ts'
import type { Logger } from '../log.ts'

const STDERR_TAIL_BYTES = 4_096
const FIRST_LINE_MAX_BYTES = 4_096

export interface BackendProcess {
  readonly child: ChildProcess
  readonly pid: number | undefined
  /** Resolves when the process is gone (exit, or a spawn that never started). */
  readonly exited: Promise<void>
  readonly stderr: StderrTail
  startedAt: number
  stopRequested: boolean
  hasExited: boolean
}

export interface LaunchOptions {
  readonly user: string
  /** Aborted when the user is removed while the backend starts. */
  readonly signal: AbortSignal
  readonly spawn: typeof spawnProcess
  readonly execPath: string
  readonly backendPath: string
  readonly env: NodeJS.ProcessEnv
  readonly startTimeoutMs: number
  readonly clock: Clock
  readonly logger: Logger
  /** Stops a process that started but failed to become ready; resolves once it is gone. */
  readonly stop: (proc: BackendProcess) => Promise<void>
}

export interface LaunchedBackend {
  readonly process: BackendProcess
  readonly address: string
  readonly port: number
}

/** Spawns one backend and waits for its listening line, its early exit, the timeout, or an abort. */
export function launchBackend (options: LaunchOptions): Promise<LaunchedBackend> {
const { user, signal, clock } = options
  if (signal.aborted) return Promise.reject(new WorkloadNotFoundError(`backend for ${user} was removed while starting`))
  let child: ChildProcess
  try {
    // stdin stays an open pipe: when this process dies, the child reads EOF and exits.
    child = options.spawn(options.execPath, [options.backendPath, '--user', user, '--port', '0', '--host', '127.0.0.1'], {
      stdio: ['pipe', 'pipe', 'pipe'],
      env: options.env,
    })
  } catch (err) {
    return Promise.reject(new WorkloadFailedError(`cannot start backend for ${user}: ${(err as Error).message}`, { cause: err }))
  }
  const stderr = new StderrTail()
  let spawnError: Error | undefined
  const proc: BackendProcess = {
    child,
    pid: child.pid,
    stderr,
    startedAt: clock.now(),
    stopRequested: false,
    hasExited: false,
    exited: new Promise<void>((resolve) => {
      child.once('exit', () => { proc.hasExited = true; resolve() })
      child.once('error', (err) => {
        spawnError = err
        // 'error' without a pid means the process never started, so no 'exit' follows.
        if (child.pid === undefined) { proc.hasExited = true; resolve() }
      })
    }),
  }
  child.stdin?.on('error', () => { /* the child is gone; its exit is handled */ })
  child.stderr?.on('data', (chunk: Buffer) => {
    stderr.push(chunk)
    options.logger.debug({ user, pid: child.pid, stderr: chunk.toString('utf8').trimEnd() }, 'local backend stderr')
  })

  return new Promise((resolve, reject) => {
    let firstLine = ''
    let settled = false
    const settle = (): boolean => {
      if (settled) return false
      settled = true
      clock.clearTimeout(timer)
      signal.removeEventListener('abort', onAbort)
      child.off('close', onEarlyClose)
      return true
    }
    const succeed = (result: { address: string, port: number }): void => {
      if (settle()) resolve({ process: proc, ...result })
    }
    const fail = (error: Error): void => {
      if (!settle()) return
      proc.stopRequested = true
      void options.stop(proc).then(() => { reject(error) })
    }
    const onAbort = (): void => { fail(new WorkloadNotFoundError(`backend for ${user} was removed while starting`)) }
    const onEarlyClose = (): void => {
      const how = spawnError !== undefined ? `could not be spawned (${spawnError.message})` : `exited (${describeExit(child)}) before listening`
      fail(new WorkloadFailedError(`backend for ${user} ${how}${stderr.suffix()}`, { cause: spawnError }))
    }
    const timer = clock.setTimeout(() => {
      fail(new WorkloadFailedError(`backend for ${user} did not report a listening address within ${options.startTimeoutMs} ms${stderr.suffix()}`))
    }, options.startTimeoutMs)
    signal.addEventListener('abort', onAbort, { once: true })
    // 'close' rather than 'exit': by then stderr has been read to the end.
    child.once('close', onEarlyClose)
    child.stdout?.setEncoding('utf8')
    child.stdout?.on('data', (text: string) => {
      if (settled) return
      firstLine += text
      const newline = firstLine.indexOf('\n')
      if (newline === -1) {
        if (firstLine.length > FIRST_LINE_MAX_BYTES) fail(new WorkloadFailedError(`backend for ${user} printed ${firstLine.length} bytes without a newline`))
        return
      }
      const listening = parseListening(firstLine.slice(0, newline))
      if (listening === undefined) fail(new WorkloadFailedError(`backend for ${user} printed an unexpected first line: ${JSON.stringify(firstLine.slice(0, Math.min(newline, 200)))}`))
      else succeed(listening)
    })
  })
}

function parseListening (line: string): { address: string, port: number } | undefined {
  try {
    const parsed = JSON.parse(line) as { listening?: { address?: unknown, port?: unknown } }
    const { address, port } = parsed.listening ?? {}
    if (typeof address !== 'string' || typeof port !== 'number' || !Number.isInteger(port) || port < 1 || port > 65535) return undefined
    return { address, port }
  } catch {
    return undefined
  }
}

function describeExit (child: ChildProcess): string {
  return child.signalCode !== null ? `signal ${child.signalCode}` : `code ${String(child.exitCode)}`
}

/** The last few KiB a child wrote to stderr, for error messages. */
export class StderrTail {
  #chunks: Buffer[] = []
  #bytes = 0

  push (chunk: Buffer): void {
    this.#chunks.push(chunk)
    this.#bytes += chunk.length
    while (this.#bytes > STDERR_TAIL_BYTES && this.#chunks.length > 1) this.#bytes -= this.#chunks.shift()?.length ?? 0
  }

  text (): string {
    const all = Buffer.concat(this.#chunks)
    return all.subarray(Math.max(0, all.length - STDERR_TAIL_BYTES)).toString('utf8').trim()
  }

  suffix (): string {
    const text = this.text()
    return text === '' ? '' : `; stderr: ${text}`
  }
}
