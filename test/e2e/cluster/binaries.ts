// Finds the control plane's binaries, building them on a cold cache with build.sh (which
// returns at once when warm). Without Go and without a cache this fails, never skips.
import { execFile } from 'node:child_process'
import { existsSync } from 'node:fs'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'

export const BUILD_SCRIPT = fileURLToPath(new URL('./build.sh', import.meta.url))
/** A cold build on 2 cores, measured with headroom. */
export const COLD_BUILD_BUDGET_MS = 45 * 60_000

export interface ControlPlaneBinaries {
  readonly dir: string
  readonly etcd: string
  readonly kubeApiserver: string
  readonly kubeControllerManager: string
}

export function locateBinaries (options: { env?: NodeJS.ProcessEnv, timeoutMs?: number } = {}): Promise<ControlPlaneBinaries> {
  return new Promise((resolve, reject) => {
    execFile('bash', [BUILD_SCRIPT], {
      env: options.env ?? process.env,
      timeout: options.timeoutMs ?? COLD_BUILD_BUDGET_MS,
      maxBuffer: 64 * 1024 * 1024,
    }, (err, stdout, stderr) => {
      const dir = stdout.trim().split('\n').at(-1) ?? ''
      if (err !== null) {
        reject(new Error(`test/e2e/cluster/build.sh failed (${err.killed ? 'timed out' : `exit ${String(err.code)}`}):\n${stderr.split('\n').slice(-30).join('\n')}`))
        return
      }
      const binaries = { dir, etcd: join(dir, 'etcd'), kubeApiserver: join(dir, 'kube-apiserver'), kubeControllerManager: join(dir, 'kube-controller-manager') }
      const missing = [binaries.etcd, binaries.kubeApiserver, binaries.kubeControllerManager].filter((file) => !existsSync(file))
      if (dir === '' || missing.length > 0) {
        reject(new Error(`test/e2e/cluster/build.sh printed ${JSON.stringify(dir)} but these are missing: ${missing.join(', ')}`))
        return
      }
      resolve(binaries)
    })
  })
}
