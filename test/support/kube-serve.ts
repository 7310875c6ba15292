// A real `podgate serve` (gateway, admin port and Kubernetes provisioner) against the fake
// API server, as a child process: what an operator scrapes, controller metrics included.
import { randomBytes } from 'node:crypto'
import { mkdtemp, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { request } from 'undici'
import { FakeKubeServer } from './fake-kube.ts'
import { kubeconfigYaml } from './kubeconfig.ts'
import { parseExposition, valueOf, type Exposition } from './metrics.ts'
import { startServe, type ServeProcess } from './serve.ts'

interface Teardown { teardown (fn: () => unknown): void }

export interface KubeServe {
  readonly serve: ServeProcess
  readonly kube: FakeKubeServer
  /** GET /metrics on the admin port, parsed. */
  readonly scrape: () => Promise<Exposition>
  /** The same, as text. */
  readonly scrapeText: () => Promise<string>
}

/** How many scrapes to wait for the Lease, 50 ms apart: the first attempt takes a free Lease at once. */
const LEADER_SCRAPES = 200

export interface KubeServeOptions {
  /** Another replica on this API server; a new fake API server when undefined. */
  readonly kube?: FakeKubeServer
  /** Wait until this replica holds the Lease (default true; false for a second replica). */
  readonly lead?: boolean
}

/** Starts `podgate serve` on the fake API server (a new one unless given), by default waiting until it leads. */
export async function startKubeServe (t: Teardown, env: Record<string, string> = {}, options: KubeServeOptions = {}): Promise<KubeServe> {
  const kube = options.kube ?? await FakeKubeServer.start({ bookmarkIntervalMs: 200 })
  if (options.kube === undefined) t.teardown(() => kube.stop())
  const dir = await mkdtemp(join(tmpdir(), 'podgate-kube-serve-'))
  t.teardown(() => rm(dir, { recursive: true, force: true }))
  const kubeconfig = join(dir, 'kubeconfig')
  await writeFile(kubeconfig, kubeconfigYaml(kube, { namespace: 'apps' }))
  const serve = await startServe(t, {
    KUBECONFIG: kubeconfig,
    PODGATE_JWT_SECRET: randomBytes(32).toString('hex'),
    PODGATE_POD_NAME: 'podgate-0',
    ...env,
  })
  t.teardown(() => serve.stop())
  const scrapeText = async (): Promise<string> => await (await request(`${serve.adminUrl}/metrics`)).body.text()
  const scrape = async (): Promise<Exposition> => parseExposition(await scrapeText())
  for (let i = 0; options.lead !== false && valueOf(await scrape(), 'podgate_leader') !== 1; i++) {
    if (i === LEADER_SCRAPES) throw new Error('podgate serve did not take the Lease on the fake API server')
    await new Promise((resolve) => setTimeout(resolve, 50))
  }
  return { serve, kube, scrape, scrapeText }
}
