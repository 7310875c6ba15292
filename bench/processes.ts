// Every process the benchmark starts goes through a ProcessGroup, so one call stops all of
// them (on success, error, or a signal). Each child leads its own process group, so nginx
// workers and npm's children die with their parent, and /proc can sum a whole tree.
import { spawn } from 'node:child_process'
import type { ChildProcess } from 'node:child_process'

const TAIL_BYTES = 8192
const STOP_GRACE_MS = 3000

export interface SpawnOptions {
  /** CPUs to pin to with taskset; undefined leaves the process unpinned. */
  readonly cpus?: readonly number[] | undefined
  readonly env?: NodeJS.ProcessEnv
  readonly cwd?: string
}

export class BenchProcess {
  readonly name: string
  readonly pid: number
  readonly exited: Promise<number | null>
  readonly #child: ChildProcess
  #stdout = ''
  #stderr = ''

  constructor (name: string, child: ChildProcess) {
    this.name = name
    this.#child = child
    child.stdout?.setEncoding('utf8').on('data', (chunk: string) => { this.#stdout = (this.#stdout + chunk).slice(-TAIL_BYTES) })
    child.stderr?.setEncoding('utf8').on('data', (chunk: string) => { this.#stderr = (this.#stderr + chunk).slice(-TAIL_BYTES) })
    // 'close', not 'exit': by then every byte of its output has been read.
    this.exited = new Promise((resolve) => {
      child.once('close', (code: number | null) => { resolve(code) })
      child.once('error', () => { resolve(null) })
    })
    if (child.pid === undefined) throw new Error(`${name}: failed to start ${String(child.spawnfile)}`)
    this.pid = child.pid
  }

  get running (): boolean { return this.#child.exitCode === null && this.#child.signalCode === null }

  /** Last output, for error messages. */
  tail (): string { return `${this.#stderr}\n${this.#stdout}`.trim().split('\n').slice(-12).join('\n') }

  /** Resolves with the value of `key` from the first stdout line that is a JSON object holding it. */
  async jsonLine<T> (key: string, timeoutMs: number): Promise<T> {
    const stdout = this.#child.stdout
    if (stdout === null) throw new Error(`${this.name}: no stdout`)
    return await new Promise<T>((resolve, reject) => {
      let buffered = ''
      let settled = false
      const settle = (outcome: () => void): void => {
        if (settled) return
        settled = true
        clearTimeout(timer)
        stdout.off('data', onData)
        outcome()
      }
      const onData = (chunk: string): void => {
        buffered += chunk
        for (let end = buffered.indexOf('\n'); end !== -1; end = buffered.indexOf('\n')) {
          const parsed = parseJsonObject(buffered.slice(0, end).trim())
          buffered = buffered.slice(end + 1)
          if (parsed !== undefined && key in parsed) { settle(() => { resolve(parsed[key] as T) }); return }
        }
      }
      const timer = setTimeout(() => { settle(() => { reject(new Error(`${this.name}: no "${key}" line within ${timeoutMs} ms:\n${this.tail()}`)) }) }, timeoutMs)
      stdout.on('data', onData)
      void this.exited.then(() => { settle(() => { reject(new Error(`${this.name} exited before printing "${key}":\n${this.tail()}`)) }) })
    })
  }

  /** Waits for the process to exit; stops it and throws when it runs past the timeout. */
  async finished (timeoutMs: number): Promise<number | null> {
    let timer: NodeJS.Timeout | undefined
    const timedOut = new Promise<'timeout'>((resolve) => { timer = setTimeout(() => { resolve('timeout') }, timeoutMs) })
    const code = await Promise.race([this.exited, timedOut])
    clearTimeout(timer)
    if (code === 'timeout') {
      await this.stop()
      throw new Error(`${this.name}: still running after ${timeoutMs} ms`)
    }
    return code
  }

  /** Waits for the process to finish and returns the last JSON object it printed. */
  async result<T> (timeoutMs: number): Promise<T> {
    const code = await this.finished(timeoutMs)
    const lines = this.#stdout.trim().split('\n')
    const parsed = parseJsonObject(lines[lines.length - 1]?.trim() ?? '')
    if (code !== 0 || parsed === undefined) throw new Error(`${this.name} exited with ${String(code)}:\n${this.tail()}`)
    return parsed as T
  }

  /** SIGTERM to the whole process group, SIGKILL after a grace period. */
  async stop (): Promise<void> {
    if (this.running) {
      // A paused group would hold SIGTERM pending until continued.
      this.signal('SIGCONT')
      this.signal('SIGTERM')
      const timer = setTimeout(() => { this.signal('SIGKILL') }, STOP_GRACE_MS)
      await this.exited
      clearTimeout(timer)
    }
    this.signal('SIGKILL') // members of the group that outlived their leader (e.g. nginx workers)
  }

  signal (signal: NodeJS.Signals): void {
    try {
      process.kill(-this.pid, signal)
    } catch {
      // the group is already gone
    }
  }
}

export class ProcessGroup {
  readonly #members = new Set<BenchProcess>()
  readonly #parent: ProcessGroup | undefined

  constructor (parent?: ProcessGroup) { this.#parent = parent }

  /** A group whose members are also stopped by this one. */
  child (): ProcessGroup { return new ProcessGroup(this) }

  #closed = false

  get #shutDown (): boolean { return this.#closed || (this.#parent !== undefined && this.#parent.#shutDown) }

  spawn (name: string, command: string, args: readonly string[], options: SpawnOptions = {}): BenchProcess {
    if (this.#shutDown) throw new Error(`${name}: not started, the benchmark is shutting down`)
    const pinned = options.cpus !== undefined && options.cpus.length > 0
    const child = spawn(pinned ? 'taskset' : command, pinned ? ['-c', options.cpus.join(','), command, ...args] : args, {
      env: options.env ?? process.env,
      cwd: options.cwd,
      detached: true,
      stdio: ['ignore', 'pipe', 'pipe'],
    })
    const member = new BenchProcess(name, child)
    this.#track(member)
    return member
  }

  #track (member: BenchProcess): void {
    this.#members.add(member)
    if (this.#parent !== undefined) this.#parent.#track(member)
    void member.exited.then(() => { this.#members.delete(member) })
  }

  /** Stops everything and refuses new processes here and in every child group. */
  async shutdown (): Promise<void> {
    this.#closed = true
    await this.stopAll()
  }

  async stopAll (): Promise<void> {
    await Promise.all([...this.#members].map(async (member) => { await member.stop() }))
  }

  /** Freezes every member (SIGSTOP to each process group): a paused path costs no CPU. */
  pause (): void {
    for (const member of this.#members) member.signal('SIGSTOP')
  }

  resume (): void {
    for (const member of this.#members) member.signal('SIGCONT')
  }

  /** Last resort from an `exit` handler, where nothing async runs. */
  killAllNow (): void {
    for (const member of this.#members) member.signal('SIGKILL')
  }
}

function parseJsonObject (line: string): Record<string, unknown> | undefined {
  if (!line.startsWith('{')) return undefined
  try {
    const value: unknown = JSON.parse(line)
    return typeof value === 'object' && value !== null && !Array.isArray(value) ? value as Record<string, unknown> : undefined
  } catch {
    return undefined
  }
}
