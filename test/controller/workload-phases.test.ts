// podgate_workloads{phase} from real `podgate serve` replicas on the fake API server: the
// leader counts every UserWorkload by phase once, however many gateway workers its /metrics
// merges; another replica publishes every phase at zero.
import t from 'tap'
import { WORKLOAD_PHASES } from '../../src/workloads/workloads.ts'
import { startKubeServe } from '../support/kube-serve.ts'
import { samplesOf, valueOf, type Exposition } from '../support/metrics.ts'

/** Scrapes, 50 ms apart and at most 200 times, until `done`; returns the last scrape. */
async function scrapeUntil (scrape: () => Promise<Exposition>, done: (m: Exposition) => boolean): Promise<Exposition> {
  let m = await scrape()
  for (let i = 0; i < 200 && !done(m); i++) {
    await new Promise((resolve) => setTimeout(resolve, 50))
    m = await scrape()
  }
  return m
}

void t.test('the leader counts UserWorkloads by phase once across its workers; another replica reports zeros', async (t) => {
  const leader = await startKubeServe(t, { PODGATE_WORKERS: '2' })
  for (const [user, suspended] of [['alice', false], ['bob', false], ['carol', true]] as const) {
    leader.kube.put({ apiVersion: 'podgate.dev/v1alpha1', kind: 'UserWorkload', metadata: { name: `user-${user}`, namespace: 'apps' }, spec: { user, suspended } })
  }
  const m = await scrapeUntil(leader.scrape, (m) => valueOf(m, 'podgate_workloads') === 3 && valueOf(m, 'podgate_workloads', { phase: 'Suspended' }) === 1)
  t.equal(valueOf(m, 'podgate_workers'), 2, 'two workers merged into this scrape')
  t.equal(valueOf(m, 'podgate_workloads'), 3, 'three workloads, not three per process')
  t.equal(valueOf(m, 'podgate_workloads', { phase: 'Suspended' }), 1)
  t.equal(valueOf(m, 'podgate_workloads', { phase: 'Pending' }) + valueOf(m, 'podgate_workloads', { phase: 'Starting' }), 2, 'the others wait for their pods')
  t.same(WORKLOAD_PHASES.map((phase) => samplesOf(m, 'podgate_workloads', { phase }).length), WORKLOAD_PHASES.map(() => 1), 'one series per phase')

  const follower = await startKubeServe(t, { PODGATE_POD_NAME: 'podgate-1' }, { kube: leader.kube, lead: false })
  const f = await scrapeUntil(follower.scrape, (m) => valueOf(m, 'podgate_endpoint_source_synced') === 1)
  t.equal(valueOf(f, 'podgate_leader'), 0)
  t.same(WORKLOAD_PHASES.map((phase) => samplesOf(f, 'podgate_workloads', { phase }).map((s) => s.value)), WORKLOAD_PHASES.map(() => [0]),
    'every phase present at zero: a sum over replicas is the leader\'s count')
})
