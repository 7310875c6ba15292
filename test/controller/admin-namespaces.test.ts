// The admin API's namespace paths on a real admin server, over KubernetesWorkloads serving two
// tenant namespaces of the fake API server.
import t, { type Test } from 'tap'
import { KubernetesWorkloads } from '../../src/controller/kubernetes-workloads.ts'
import { parseProfiles } from '../../src/controller/profiles.ts'
import { UserWorkloadCache } from '../../src/controller/user-workload-cache.ts'
import { createLogger } from '../../src/log.ts'
import { registerAdminApi } from '../../src/workloads/admin-api.ts'
import { FakeKubeServer } from '../support/fake-kube.ts'
import { startTestGateway } from '../support/gateway.ts'
import { kubeConfigFor } from '../support/kubeconfig.ts'

const ADMIN_TOKEN = 'admin-token-for-tests-0123456789'
const UW = 'podgate.dev/v1alpha1/userworkloads'

type Api = (method: string, path: string, body?: string) => Promise<{ status: number, headers: Headers, body: Record<string, unknown> | undefined }>

async function startAdmin (t: Test): Promise<{ server: FakeKubeServer, cache: UserWorkloadCache, api: Api }> {
  const server = await FakeKubeServer.start({ bookmarkIntervalMs: 100 })
  const kubeConfig = kubeConfigFor(server)
  const logger = createLogger('silent')
  const profiles = parseProfiles('web:\n  image: app:1\n')
  const cache = new UserWorkloadCache({ kubeConfig, namespaces: ['team-a', 'team-b'], logger, defaultProfile: 'web', backoff: { initialMs: 20, maxMs: 200 } })
  const workloads = new KubernetesWorkloads({ kubeConfig, namespaces: ['team-a', 'team-b'], defaultNamespace: 'team-a', profiles, logger, cache })
  t.teardown(async () => {
    await workloads.close()
    await cache.close()
    await server.stop()
  })
  cache.start()
  await cache.synced
  const gw = await startTestGateway(t, {}, { adminRoutes: (app) => { registerAdminApi(app, { workloads, adminToken: ADMIN_TOKEN, logger, profiles: profiles.names }) } })
  const api: Api = async (method, path, body) => {
    const res = await fetch(`${gw.adminUrl}${path}`, { method, headers: { authorization: `Bearer ${ADMIN_TOKEN}` }, body, signal: AbortSignal.timeout(10_000) })
    const text = await res.text()
    return { status: res.status, headers: res.headers, body: text === '' ? undefined : JSON.parse(text) as Record<string, unknown> }
  }
  return { server, cache, api }
}

async function until (condition: () => boolean, what: string): Promise<void> {
  const deadline = Date.now() + 5_000
  while (!condition()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`)
    await new Promise((resolve) => setTimeout(resolve, 5))
  }
}

void t.test('PUT, GET, list and DELETE under /api/namespaces/<ns>/users, next to the paths without one', async (t) => {
  const { server, cache, api } = await startAdmin(t)
  const created = await api('PUT', '/api/namespaces/team-b/users/dan')
  t.equal(created.status, 201)
  t.match(created.body, { user: 'dan', namespace: 'team-b', profile: 'web' })
  t.equal(created.headers.get('location'), '/api/namespaces/team-b/users/dan')
  t.ok(server.get(UW, 'team-b', 'user-dan'), 'the UserWorkload is in team-b')
  await until(() => cache.cached('dan') !== undefined, 'the cache to see dan')

  const conflict = await api('PUT', '/api/namespaces/team-a/users/dan')
  t.equal(conflict.status, 409)
  t.match(conflict.body, { error: 'PODGATE_CONFLICT', message: /already has a workload in namespace team-b/ })
  t.equal(server.get(UW, 'team-a', 'user-dan'), undefined, 'nothing created in team-a')

  const plain = await api('PUT', '/api/users/eve')
  t.equal(plain.status, 201)
  t.match(plain.body, { user: 'eve', namespace: 'team-a' }, 'the old path creates in the default namespace')
  t.equal(plain.headers.get('location'), '/api/namespaces/team-a/users/eve')
  t.equal((await api('PUT', '/api/users/dan')).status, 200, 'and updates dan where dan is')
  t.match((await api('GET', '/api/users/dan')).body, { namespace: 'team-b' })
  t.match(await api('GET', '/api/namespaces/team-b/users/dan'), { status: 200, body: { user: 'dan' } })
  t.match(await api('GET', '/api/namespaces/team-a/users/dan'), { status: 404, body: { error: 'PODGATE_NO_WORKLOAD', message: /in namespace team-a/ } })

  t.same(((await api('GET', '/api/users')).body?.items as Array<{ user: string }>).map((w) => w.user), ['dan', 'eve'])
  t.same(((await api('GET', '/api/namespaces/team-b/users')).body?.items as Array<{ user: string }>).map((w) => w.user), ['dan'])

  const revoked = await api('POST', '/api/namespaces/team-b/users/dan/revoke')
  t.match(revoked, { status: 200, body: { user: 'dan', namespace: 'team-b', tokensNotBefore: /Z$/ } })
  t.equal((server.get(UW, 'team-b', 'user-dan')?.spec as { tokensNotBefore?: string } | undefined)?.tokensNotBefore, revoked.body?.tokensNotBefore, 'written to spec.tokensNotBefore')
  t.match(await api('POST', '/api/namespaces/team-a/users/dan/revoke'), { status: 404, body: { message: /in namespace team-a/ } })
  t.match(await api('POST', '/api/users/dan/revoke'), { status: 200, body: { namespace: 'team-b' } }, 'without a namespace: where dan is')
  t.equal((await api('DELETE', '/api/namespaces/team-a/users/dan')).status, 204, 'DELETE where there is none: 204')
  t.ok(server.get(UW, 'team-b', 'user-dan'), 'and team-b\'s dan stays')
  t.equal((await api('DELETE', '/api/namespaces/team-b/users/dan')).status, 204)
  t.equal(server.get(UW, 'team-b', 'user-dan'), undefined)
})

void t.test('bad namespace paths are 400 or 404 and apply nothing', async (t) => {
  const { server, api } = await startAdmin(t)
  const cases: Array<[string, number, RegExp]> = [
    ['/api/namespaces/Team_B/users/fay', 400, /namespace: "Team_B" is not a namespace name/],
    ['/api/namespaces/team-z/users/fay', 400, /team-z is not served by this podgate/],
    [`/api/namespaces/${'n'.repeat(200)}/users/fay`, 400, /not a namespace name/],
    ['/api/namespaces/team-b/users/Fay!', 400, /^id: /],
    ['/api/namespaces/team-b/groups/fay', 404, /expected \/api\/namespaces\/<namespace>\/users\/<id>/],
    ['/api/namespaces/team-b', 404, /expected/],
  ]
  for (const [path, status, message] of cases) {
    const res = await api('PUT', path)
    t.equal(res.status, status, `${path.slice(0, 60)} → ${status}`)
    t.match(res.body?.message, message)
  }
  t.equal(server.list(UW).length, 0, 'nothing was created')
})

void t.test('a served namespace podgate cannot read (deleted, or its Role gone) leaves the other namespaces listable', async (t) => {
  const { server, cache, api } = await startAdmin(t)
  t.equal((await api('PUT', '/api/namespaces/team-a/users/gil')).status, 201)
  t.equal((await api('PUT', '/api/namespaces/team-b/users/hal')).status, 201)
  await until(() => cache.cached('hal') !== undefined, 'hal cached')
  server.injectError({ path: '/apis/podgate.dev/v1alpha1/namespaces/team-b/', status: 403 })
  const all = await api('GET', '/api/users')
  t.equal(all.status, 200, 'the list across namespaces answers')
  t.same((all.body?.items as Array<{ user: string }>).map((w) => w.user), ['gil'], 'with what it could read')
  t.match(await api('GET', '/api/namespaces/team-a/users'), { status: 200, body: { items: [{ user: 'gil' }] } }, 'team-a on its own is untouched')
  t.match(await api('GET', '/api/namespaces/team-b/users'), { status: 404, body: { message: /cannot read UserWorkloads in namespace team-b \(403\)/ } })
  t.match(await api('GET', '/api/namespaces/team-b/users/hal'), { status: 404, body: { message: /namespace is gone, or podgate's Role there is missing/ } })
})
