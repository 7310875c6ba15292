// `podgate serve` as a local process against the test cluster, with the credentials it is
// given (the chart's ServiceAccount token). Its JSON log goes to a file; the addresses it
// listens on are read from its "podgate serving" line.
import { readFile } from 'node:fs/promises'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { request } from 'undici'
import { ClusterProcess, waitFor } from './cluster/processes.ts'

export const MAIN = fileURLToPath(new URL('../../src/main.ts', import.meta.url))

export interface PodgateProcess {
  readonly process: ClusterProcess
  readonly gatewayUrl: string
  readonly adminUrl: string
  /** Milliseconds from spawn to /readyz 200. */
  readonly readyMs: number
  stop (): Promise<void>
}

export interface StartPodgateOptions {
  /** PODGATE_* and KUBECONFIG; PODGATE_HOST and the ports default to 127.0.0.1 and 0. */
  readonly env: Record<string, string>
  readonly logDir: string
  /** Distinguishes log files of successive processes. */
  readonly name: string
  readonly timeoutMs?: number
}

export async function startPodgate (options: StartPodgateOptions): Promise<PodgateProcess> {
  const started = Date.now()
  const logFile = join(options.logDir, `${options.name}.log`)
  const child = ClusterProcess.start({
    name: options.name,
    command: process.execPath,
    args: [MAIN, 'serve'],
    logFile,
    env: {
      PATH: process.env.PATH,
      HOME: process.env.HOME,
      PODGATE_HOST: '127.0.0.1',
      PODGATE_PORT: '0',
      PODGATE_ADMIN_PORT: '0',
      PODGATE_LOG_LEVEL: 'debug',
      // Two gateway workers behind the primary, whatever this machine's CPU count: every
      // scenario (spawn, activity, restart, API server outage) runs through the worker path.
      PODGATE_WORKERS: '2',
      ...options.env,
    },
  })
  const timeoutMs = options.timeoutMs ?? 30_000
  try {
    const urls = await waitFor(async () => {
      for (const line of (await readFile(logFile, 'utf8')).split('\n')) {
        if (!line.startsWith('{')) continue
        const entry = JSON.parse(line) as { gateway?: string, admin?: string }
        if (typeof entry.gateway === 'string' && typeof entry.admin === 'string') return { gateway: entry.gateway, admin: entry.admin }
      }
      return undefined
    }, { what: `${options.name}: the "podgate serving" log line`, timeoutMs, process: child })
    await waitFor(async () => {
      const response = await request(`${urls.admin}/readyz`, { signal: AbortSignal.timeout(1_000) })
      const text = await response.body.text()
      if (response.statusCode === 200) return true
      throw new Error(`/readyz ${response.statusCode} ${text.slice(0, 200)}`)
    }, { what: `${options.name}: /readyz`, timeoutMs, process: child })
    return { process: child, gatewayUrl: urls.gateway, adminUrl: urls.admin, readyMs: Date.now() - started, stop: async () => { await child.stop(25_000) } }
  } catch (err) {
    await child.stop()
    throw err
  }
}
