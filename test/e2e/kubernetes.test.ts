// podgate end to end against a real control plane (etcd, kube-apiserver, kube-controller-
// manager built from the Go module proxy) with a simulated node whose pods are the built-in
// backend in a network namespace. podgate runs as a local process with the chart's
// configuration and the chart's ServiceAccount token, so the chart's RBAC is what is tested.
// Without Go (and no cached build), root or iproute2 this file fails; it never skips.
import { mkdir, readFile, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
import { SignJWT } from 'jose'
import t, { type Test } from 'tap'
import { request } from 'undici'
import { mintToken } from '../../src/auth/mint.ts'
import { loadProfiles } from '../../src/controller/profiles.ts'
import { desiredChildren } from '../../src/controller/templates.ts'
import { FIELD_MANAGER } from '../../src/kube/api.ts'
import { MANAGED_BY, MANAGED_BY_LABEL, USER_LABEL, workloadName } from '../../src/kube/labels.ts'
import { CHART_DIR, Helm, installHelm } from '../chart/chart.ts'
import { COLD_BUILD_BUDGET_MS, locateBinaries } from './cluster/binaries.ts'
import { ControlPlane } from './cluster/control-plane.ts'
import { APPLY_PATCH, KubeApi } from './cluster/kube-api.ts'
import { kubeconfigYaml } from './cluster/pki.ts'
import { PodNetwork } from './cluster/pod-network.ts'
import { waitFor } from './cluster/processes.ts'
import { SimulatedNode } from './cluster/simulated-node.ts'
import { chartEnvironment } from './chart-environment.ts'
import { startPodgate, type PodgateProcess } from './podgate-process.ts'

const NAMESPACE = 'podgate'
const RELEASE = 'podgate'
/** The chart's full name for this release: its ServiceAccount, Deployment and Secret. */
const FULLNAME = 'podgate'
const OTHER_NAMESPACE = 'elsewhere'
/** A chart release: where podgate's Deployment, Secret and ServiceAccount live and what they are called. */
interface Release { readonly namespace: string, readonly name: string, readonly fullname: string }
const GATEWAY: Release = { namespace: NAMESPACE, name: RELEASE, fullname: FULLNAME }
const WORKLOADS = `/apis/podgate.dev/v1alpha1/namespaces/${NAMESPACE}/userworkloads`
const E2E_BUDGET_MS = 10 * 60_000
const ROUTE_TIMEOUT_MS = 60_000
const OUTAGE_MS = 15_000

interface Scenario { name: string, ms: number, ok: boolean }
const scenarios: Scenario[] = []

if (process.getuid?.() !== 0) throw new Error('the end-to-end suite needs root: it creates a network namespace and a veth pair for the simulated node\'s pods')

// A cold build takes far longer than the suite; the limit shrinks back once the binaries are there.
t.setTimeout(COLD_BUILD_BUDGET_MS + E2E_BUDGET_MS)
const buildStarted = Date.now()
const binaries = await locateBinaries()
const helmBin = await installHelm()
t.comment(`control plane binaries in ${binaries.dir} (${Date.now() - buildStarted} ms to locate or build)`)
t.setTimeout(E2E_BUDGET_MS)

const cluster = await ControlPlane.start({ binaries })
const { admin } = cluster
t.comment(`control plane started in ${cluster.timings.totalMs} ms (pki ${cluster.timings.pkiMs}, etcd ${cluster.timings.etcdMs}, kube-apiserver ${cluster.timings.apiServerMs}, kube-controller-manager ${cluster.timings.controllerManagerMs})`)
const logDir = join(cluster.dir, 'logs')
const runDir = join(cluster.dir, 'podgate')
await mkdir(runDir, { recursive: true })

const harness: { network?: PodNetwork, node?: SimulatedNode } = {}
let podgate: PodgateProcess | undefined
let podgateRuns = 0
let serviceAccountApi: KubeApi | undefined
t.teardown(async () => {
  const failed = !t.passing()
  if (failed) {
    t.comment(cluster.logTails())
    if (podgate !== undefined) t.comment(`--- ${podgate.process.name} ---\n${podgate.process.logTail(60)}`)
    t.comment(`every log is kept in ${logDir}`)
  }
  await podgate?.stop()
  await harness.node?.stop()
  await harness.network?.destroy()
  await serviceAccountApi?.close()
  await cluster.close({ keep: failed })
  t.comment(`scenarios: ${scenarios.map((s) => `${s.name} ${s.ok ? 'ok' : 'FAILED'} ${(s.ms / 1000).toFixed(1)} s`).join('; ')}`)
})

const network = harness.network = await PodNetwork.create()
const node = harness.node = new SimulatedNode({ api: admin, network, logDir, log: (message) => { t.comment(message) } })
await node.start()

const helm = await Helm.create(t, helmBin)
let secret = new Uint8Array()
let adminToken = ''
let profilesFile: string | undefined

async function scenario (name: string, fn: (st: Test) => Promise<void>): Promise<void> {
  await t.test(name, async (st) => {
    const started = Date.now()
    let threw = false
    try {
      await fn(st)
    } catch (err) {
      threw = true
      throw err
    } finally {
      scenarios.push({ name, ms: Date.now() - started, ok: !threw && st.passing() })
      st.comment(`${name}: ${Date.now() - started} ms`)
    }
  })
}

/** Starts podgate with the chart's environment and a fresh token of the chart's ServiceAccount. */
async function runPodgate (release = GATEWAY): Promise<PodgateProcess> {
  podgateRuns++
  const podName = `podgate-local-${podgateRuns}`
  const env = await chartEnvironment({ api: admin, namespace: release.namespace, deployment: release.fullname, podName, dir: runDir })
  const token = await serviceAccountToken(release)
  const kubeconfig = join(runDir, `${podName}.kubeconfig`)
  await writeFile(kubeconfig, kubeconfigYaml({ server: cluster.server, ca: cluster.pki.ca, user: release.fullname, token, namespace: release.namespace }), { mode: 0o600 })
  secret = new TextEncoder().encode(env.PODGATE_JWT_SECRET ?? '')
  adminToken = env.PODGATE_ADMIN_TOKEN ?? ''
  profilesFile = env.PODGATE_PROFILES
  return await startPodgate({
    name: podName,
    logDir,
    env: { ...env, KUBECONFIG: kubeconfig, PODGATE_PORT: '0', PODGATE_ADMIN_PORT: '0', PODGATE_HOST: '127.0.0.1' },
  })
}

async function serviceAccountToken (release = GATEWAY): Promise<string> {
  const answer = await admin.expect<{ status: { token: string } }>('POST', `/api/v1/namespaces/${release.namespace}/serviceaccounts/${release.fullname}/token`, {
    body: { apiVersion: 'authentication.k8s.io/v1', kind: 'TokenRequest', spec: { expirationSeconds: 3600 } },
  })
  return answer.status.token
}

async function restartPodgate (release = GATEWAY): Promise<PodgateProcess> {
  await podgate?.stop()
  podgate = undefined
  podgate = await runPodgate(release)
  return podgate
}

interface Answer { status: number, body: { user?: string, headers?: Record<string, string>, error?: string } | undefined, text: string }

/** The claim the tenancy scenario's release names in auth.tenantClaim. */
const TENANT_CLAIM = 'tenant'

/** A token with a tenant claim as well as the user (mintToken signs the user claim only). */
async function tenantToken (user: string, tenant: string): Promise<string> {
  return await new SignJWT({ sub: user, [TENANT_CLAIM]: tenant }).setProtectedHeader({ alg: 'HS256', typ: 'JWT' }).setIssuedAt().setExpirationTime('1h').sign(secret)
}

async function asUser (user: string, path = '/', options: { accept?: string, timeoutMs?: number, tenant?: string } = {}): Promise<Answer> {
  if (podgate === undefined) throw new Error('podgate is not running')
  const token = options.tenant === undefined ? await mintToken({ secret, user, ttlSeconds: 3600 }) : await tenantToken(user, options.tenant)
  const response = await request(`${podgate.gatewayUrl}${path}`, {
    headers: { authorization: `Bearer ${token}`, accept: options.accept ?? 'application/json' },
    // podgate restarts between scenarios: no connection outlives its request.
    reset: true,
    signal: AbortSignal.timeout(options.timeoutMs ?? 10_000),
  })
  const text = await response.body.text()
  let body: Answer['body']
  try { body = JSON.parse(text) as Answer['body'] } catch { body = undefined }
  return { status: response.statusCode, body, text }
}

async function adminApi (method: string, path: string, body?: unknown): Promise<{ status: number, text: string }> {
  if (podgate === undefined) throw new Error('podgate is not running')
  const response = await request(`${podgate.adminUrl}${path}`, {
    method: method as 'GET',
    headers: { authorization: `Bearer ${adminToken}`, ...(body === undefined ? {} : { 'content-type': 'application/json' }) },
    body: body === undefined ? undefined : JSON.stringify(body),
    reset: true,
    signal: AbortSignal.timeout(10_000),
  })
  return { status: response.statusCode, text: await response.body.text() }
}

/**
 * Routes `user` like routedTo, and says when each link of the chain first appeared:
 * Deployment (reconciler), Pod (ReplicaSet controller), pod Ready (simulated node),
 * EndpointSlice address (EndpointSlice controller), routed (podgate's informer).
 */
async function routedWithMilestones (user: string, timeoutMs = ROUTE_TIMEOUT_MS): Promise<string> {
  const started = Date.now()
  const chain = ['Deployment', 'Pod', 'pod Ready', 'EndpointSlice', 'routed']
  const seen: Record<string, number> = {}
  // Each link implies the ones before it (they may have appeared between two reads).
  const mark = (name: string, present: boolean): void => {
    if (!present) return
    for (const link of chain.slice(0, chain.indexOf(name) + 1)) seen[link] ??= Date.now() - started
  }
  await waitFor(async () => {
    const found = await children(user)
    mark('Deployment', found.deployment)
    mark('Pod', found.pods.length > 0)
    mark('pod Ready', found.pods.some((p) => p.status?.phase === 'Running'))
    mark('EndpointSlice', found.slices.some((slice) => (slice.endpoints ?? []).some((e) => e.conditions?.ready === true)))
    const answer = await asUser(user)
    mark('routed', answer.status === 200 && answer.body?.user === user)
    if (seen.routed !== undefined) return true
    throw new Error(`${answer.status} ${answer.text.slice(0, 120)}; so far ${JSON.stringify(seen)}`)
  }, { what: `requests for ${user} answered by ${user}'s backend`, timeoutMs, intervalMs: 250, process: podgate?.process })
  return chain.map((link) => `${link} ≤${seen[link] ?? '?'} ms`).join(', ')
}

async function routedTo (user: string, timeoutMs = ROUTE_TIMEOUT_MS, tenant?: string): Promise<number> {
  const started = Date.now()
  await waitFor(async () => {
    const answer = await asUser(user, '/', tenant === undefined ? {} : { tenant })
    if (answer.status === 200 && answer.body?.user === user) return true
    throw new Error(`${answer.status} ${answer.text.slice(0, 160)}`)
  }, { what: `requests for ${user} answered by ${user}'s backend`, timeoutMs, intervalMs: 250, process: podgate?.process })
  return Date.now() - started
}

interface Named { metadata: { name: string, creationTimestamp?: string, ownerReferences?: Array<{ kind: string, name: string }> } }
interface PodList { items: Array<Named & { status?: { phase?: string, podIP?: string } }> }
interface SliceList { items: Array<Named & { metadata: { labels?: Record<string, string> }, endpoints?: Array<{ addresses: string[], conditions?: { ready?: boolean } }> }> }

function selector (user: string): string {
  return `labelSelector=${encodeURIComponent(`podgate.dev/user=${user}`)}`
}

/** The user's children as the API server has them; a 404 is an absent object. */
async function children (user: string): Promise<{ deployment: boolean, service: boolean, replicaSets: Named[], pods: PodList['items'], slices: SliceList['items'] }> {
  const exists = async (path: string): Promise<boolean> => {
    const response = await admin.request('GET', path)
    if (response.status === 404) return false
    if (response.status === 200) return true
    throw new Error(`GET ${path}: ${response.status}`)
  }
  return {
    deployment: await exists(`/apis/apps/v1/namespaces/${NAMESPACE}/deployments/user-${user}`),
    service: await exists(`/api/v1/namespaces/${NAMESPACE}/services/user-${user}`),
    replicaSets: (await admin.get<{ items: Named[] }>(`/apis/apps/v1/namespaces/${NAMESPACE}/replicasets?${selector(user)}`)).items,
    pods: (await admin.get<PodList>(`/api/v1/namespaces/${NAMESPACE}/pods?${selector(user)}`)).items,
    slices: (await admin.get<SliceList>(`/apis/discovery.k8s.io/v1/namespaces/${NAMESPACE}/endpointslices?${selector(user)}`)).items,
  }
}

await scenario('helm install of charts/podgate', async (st) => {
  const install = await helm.run(['install', RELEASE, CHART_DIR, '--namespace', NAMESPACE, '--create-namespace',
    '--kubeconfig', cluster.adminKubeconfig, '--set', 'replicaCount=0', '--wait', '--timeout', '2m'])
  st.equal(install.code, 0, `helm install: ${install.stderr}`)
  const crd = await admin.get<{ status?: { conditions?: Array<{ type: string, status: string }> } }>('/apis/apiextensions.k8s.io/v1/customresourcedefinitions/userworkloads.podgate.dev')
  st.ok(crd.status?.conditions?.some((c) => c.type === 'Established' && c.status === 'True'), 'the UserWorkload CRD is established')
  for (const path of [
    `/api/v1/namespaces/${NAMESPACE}/serviceaccounts/${FULLNAME}`,
    `/apis/rbac.authorization.k8s.io/v1/namespaces/${NAMESPACE}/roles/${FULLNAME}`,
    `/apis/rbac.authorization.k8s.io/v1/namespaces/${NAMESPACE}/rolebindings/${FULLNAME}`,
    `/api/v1/namespaces/${NAMESPACE}/secrets/${FULLNAME}`,
    `/api/v1/namespaces/${NAMESPACE}/configmaps/${FULLNAME}-profiles`,
    `/apis/apps/v1/namespaces/${NAMESPACE}/deployments/${FULLNAME}`,
    `/api/v1/namespaces/${NAMESPACE}/services/${FULLNAME}`,
  ]) {
    st.equal((await admin.request('GET', path)).status, 200, `${path} exists`)
  }
  await admin.expect('POST', '/api/v1/namespaces', { body: { apiVersion: 'v1', kind: 'Namespace', metadata: { name: OTHER_NAMESPACE } } })
  // An established CRD may still answer 429 ("storage is (re)initializing") for a moment.
  const served = Date.now()
  await waitFor(async () => {
    const response = await admin.request('GET', WORKLOADS)
    if (response.status === 200) return true
    throw new Error(`${response.status} ${response.text.slice(0, 160)}`)
  }, { what: 'UserWorkloads listable', timeoutMs: 30_000 })
  st.comment(`UserWorkloads listable ${Date.now() - served} ms after helm install returned`)
})

await scenario('RBAC: the chart\'s ServiceAccount reads what podgate needs and nothing else', async (st) => {
  serviceAccountApi = new KubeApi({ server: cluster.server, ca: cluster.pki.ca, token: await serviceAccountToken() })
  const sa = serviceAccountApi
  const allowed = [
    `/apis/discovery.k8s.io/v1/namespaces/${NAMESPACE}/endpointslices`,
    WORKLOADS,
    `/apis/apps/v1/namespaces/${NAMESPACE}/deployments`,
    `/api/v1/namespaces/${NAMESPACE}/pods`,
  ]
  for (const path of allowed) st.equal((await sa.request('GET', path)).status, 200, `GET ${path} is allowed`)
  const forbidden: Array<[string, string, unknown?]> = [
    ['GET', `/api/v1/namespaces/${NAMESPACE}/secrets`],
    ['GET', `/api/v1/namespaces/${NAMESPACE}/secrets/${FULLNAME}`],
    ['GET', '/api/v1/secrets'],
    ['GET', `/apis/discovery.k8s.io/v1/namespaces/${OTHER_NAMESPACE}/endpointslices`],
    ['GET', `/apis/podgate.dev/v1alpha1/namespaces/${OTHER_NAMESPACE}/userworkloads`],
    ['GET', '/apis/discovery.k8s.io/v1/endpointslices'],
    ['POST', `/apis/apps/v1/namespaces/${OTHER_NAMESPACE}/deployments`, { apiVersion: 'apps/v1', kind: 'Deployment', metadata: { name: 'x' }, spec: { selector: { matchLabels: { a: 'b' } }, template: { metadata: { labels: { a: 'b' } }, spec: { containers: [{ name: 'c', image: 'i' }] } } } }],
    ['DELETE', `/api/v1/namespaces/${OTHER_NAMESPACE}`],
    ['PATCH', `/apis/rbac.authorization.k8s.io/v1/namespaces/${NAMESPACE}/roles/${FULLNAME}`, {}],
  ]
  for (const [method, path, body] of forbidden) {
    const response = await sa.request(method, path, { body, ...(method === 'PATCH' ? { contentType: 'application/merge-patch+json' } : {}) })
    st.equal(response.status, 403, `${method} ${path} is forbidden (${response.status})`)
  }
})

await scenario('podgate starts with the chart\'s configuration and ServiceAccount', async (st) => {
  podgate = await runPodgate()
  st.comment(`podgate ready ${podgate.readyMs} ms after spawn`)
  const answer = await asUser('nobody-yet')
  st.equal(answer.status, 404, `a user without a workload is 404 while spawn on demand is off (${answer.text.slice(0, 120)})`)
  const anonymous = await request(`${podgate.gatewayUrl}/`, { reset: true })
  await anonymous.body.dump()
  st.equal(anonymous.statusCode, 401, 'no token is 401')
})

/**
 * What the reconciler does for a UserWorkload, done by the test with the provisioner's own
 * templates and field manager: a UserWorkload created through the API (as `kubectl apply`
 * would), its Deployment and Service server-side applied as podgate. Routing, the node, the
 * controllers and the garbage collector are then tested whether or not a reconciler runs.
 */
async function applyWorkload (user: string): Promise<void> {
  const workload = await admin.expect<{ metadata: { name: string, uid: string } }>('POST', WORKLOADS, {
    body: { apiVersion: 'podgate.dev/v1alpha1', kind: 'UserWorkload', metadata: { name: `user-${user}` }, spec: { user } },
  })
  const profile = loadProfiles(profilesFile).default
  const wanted = desiredChildren({ user, suspended: false, owner: { name: workload.metadata.name, uid: workload.metadata.uid }, profile }, { namespace: NAMESPACE })
  const apply = `fieldManager=${FIELD_MANAGER}&force=true`
  await admin.expect('PATCH', `/apis/apps/v1/namespaces/${NAMESPACE}/deployments/user-${user}?${apply}`, { body: wanted.deployment, contentType: APPLY_PATCH })
  await admin.expect('PATCH', `/api/v1/namespaces/${NAMESPACE}/services/user-${user}?${apply}`, { body: wanted.service, contentType: APPLY_PATCH })
}

/** Deployment, ReplicaSet owned by it, one Running pod, the Service, and a slice listing exactly that pod as ready. */
async function checkChildren (st: Test, user: string): Promise<void> {
  const found = await children(user)
  st.ok(found.deployment, `Deployment user-${user}`)
  st.ok(found.service, `Service user-${user}`)
  st.ok(found.replicaSets.some((rs) => rs.metadata.ownerReferences?.some((o) => o.kind === 'Deployment' && o.name === `user-${user}`)), `a ReplicaSet owned by Deployment user-${user}`)
  const pod = found.pods.find((p) => p.status?.phase === 'Running')
  st.ok(pod?.status?.podIP, `a Running pod with an address (${pod?.status?.podIP ?? 'none'})`)
  const addresses = found.slices.flatMap((slice) => (slice.endpoints ?? []).filter((e) => e.conditions?.ready === true).flatMap((e) => e.addresses))
  st.same(addresses, [pod?.status?.podIP], `the EndpointSlice controller lists exactly that pod as ready (${addresses.join(',')})`)
  st.ok(found.slices.length > 0 && found.slices.every((slice) => slice.metadata.labels?.['app.kubernetes.io/managed-by'] === 'podgate'), 'the slices carry the managed-by label podgate watches')
  st.ok([...node.runningPods.values()].some((p) => p.ip === pod?.status?.podIP), 'that address is a backend the simulated node runs in its network namespace')
}

await scenario('a UserWorkload applied as the reconciler would → ReplicaSet, Pod, EndpointSlice → routed to that user\'s backend', async (st) => {
  const applied = Date.now()
  await applyWorkload('erin')
  const ms = await routedTo('erin')
  st.comment(`erin routable ${Date.now() - applied} ms after the apply (${ms} ms of polling)`)
  await checkChildren(st, 'erin')
  await applyWorkload('gina')
  await routedTo('gina')
  await checkChildren(st, 'gina')
  for (let i = 0; i < 10; i++) {
    const [e, g] = await Promise.all([asUser('erin'), asUser('gina')])
    st.equal(e.body?.user, 'erin', 'erin\'s token reaches erin\'s backend')
    st.equal(g.body?.user, 'gina', 'gina\'s token reaches gina\'s backend')
  }
  const answer = await asUser('erin')
  st.equal(answer.body?.headers?.['x-user-id'], 'erin', 'the backend received the identity header podgate set')
  st.equal((await asUser('frank')).status, 404, 'another user still has no workload')
})

await scenario('admin API PUT → Deployment, ReplicaSet, Pod, Service, EndpointSlice → routed to that user\'s backend', async (st) => {
  for (const user of ['alice', 'bob']) {
    const put = await adminApi('PUT', `/api/users/${user}`, {})
    st.ok(put.status === 201 || put.status === 200, `PUT /api/users/${user}: ${put.status} ${put.text.slice(0, 200)}`)
    if (put.status !== 201 && put.status !== 200) return
  }
  st.comment(`alice after the PUT: ${await routedWithMilestones('alice')}`)
  st.comment(`bob, then: ${await routedWithMilestones('bob')}`)
  for (const user of ['alice', 'bob']) await checkChildren(st, user)
  for (let i = 0; i < 10; i++) {
    const [a, b] = await Promise.all([asUser('alice'), asUser('bob')])
    st.equal(a.body?.user, 'alice', 'alice\'s token reaches alice\'s backend')
    st.equal(b.body?.user, 'bob', 'bob\'s token reaches bob\'s backend')
  }
})

await scenario('deleting the UserWorkload → the garbage collector removes its children; requests stop reaching the old backend', async (st) => {
  const before = await children('gina')
  const oldIp = before.pods[0]?.status?.podIP
  st.ok(oldIp, `gina has a pod before the delete (${oldIp ?? 'none'})`)
  // The garbage collector watches a new CRD's objects only from its next discovery resync (every 30 s).
  const tracked = await cluster.controllerManagerLogged(/updated resources from discovery.*podgate\.dev\/v1alpha1, Resource=userworkloads/, 'the garbage collector tracking UserWorkloads', 45_000)
  st.comment(`the garbage collector tracks UserWorkloads (waited ${tracked} ms for its discovery resync)`)
  await admin.expect('DELETE', `${WORKLOADS}/user-gina`, { body: { apiVersion: 'v1', kind: 'DeleteOptions', propagationPolicy: 'Background' } })
  const deleted = Date.now()
  await waitFor(async () => {
    const found = await children('gina')
    const left = [
      found.deployment && 'Deployment', found.service && 'Service', found.replicaSets.length > 0 && 'ReplicaSet',
      found.pods.length > 0 && 'Pod', found.slices.length > 0 && 'EndpointSlice',
    ].filter(Boolean)
    if (left.length === 0) return true
    throw new Error(`still there: ${left.join(', ')}`)
  }, { what: 'garbage collection of gina\'s children', timeoutMs: 30_000, intervalMs: 250 })
  st.pass(`Deployment, ReplicaSet, Pod, Service and EndpointSlice gone ${Date.now() - deleted} ms after the delete`)
  st.notOk([...node.runningPods.values()].some((p) => p.ip === oldIp), `the old backend (${oldIp ?? '?'}) is stopped`)
  const answer = await waitFor(async () => {
    const a = await asUser('gina')
    if (a.status === 404) return a
    throw new Error(`${a.status} ${a.text.slice(0, 120)}`)
  }, { what: 'gina answered 404', timeoutMs: 10_000, intervalMs: 200 })
  st.equal(answer.status, 404, 'gina is 404 (no workload, spawn on demand off)')
  st.equal((await asUser('erin')).body?.user, 'erin', 'erin is untouched')
})

await scenario('podgate restarted → routes rebuilt from the API server; no request fails after /readyz', async (st) => {
  const restarted = await restartPodgate()
  st.comment(`podgate ready ${restarted.readyMs} ms after spawn`)
  const statuses: number[] = []
  for (let i = 0; i < 20; i++) {
    const answer = await asUser('erin')
    statuses.push(answer.body?.user === 'erin' ? answer.status : -answer.status)
  }
  st.same(statuses, Array(20).fill(200), 'the first 20 requests after /readyz all reach erin')
})

await scenario('kube-apiserver stopped for 15 s → routing continues from the cache', async (st) => {
  await cluster.stopApiServer()
  const outageStarted = Date.now()
  const failures: string[] = []
  let sent = 0
  while (Date.now() - outageStarted < OUTAGE_MS && sent < 200) {
    sent++
    const answer = await asUser('erin').catch((err: unknown) => ({ status: 0, body: undefined, text: String(err) }))
    if (answer.status !== 200 || answer.body?.user !== 'erin') failures.push(`${answer.status} ${answer.text.slice(0, 80)}`)
    await sleep(250)
  }
  st.same(failures, [], `${sent} requests for erin during the outage all answered by erin`)
  const restartMs = await cluster.restartApiServer()
  st.comment(`kube-apiserver back after ${restartMs} ms`)
  const probe = await request(`${podgate!.adminUrl}/readyz`, { reset: true })
  await probe.body.dump()
  st.equal((await asUser('erin')).body?.user, 'erin', `erin still routed after the API server returned (podgate /readyz ${probe.statusCode})`)
})

await scenario('after the outage, a user created through the admin API is routable', async (st) => {
  const created = Date.now()
  const put = await waitFor(async () => {
    const answer = await adminApi('PUT', '/api/users/carol', {})
    // A 404 is a missing route, not an unavailable API server: no point retrying.
    if (answer.status === 200 || answer.status === 201 || answer.status === 404) return answer
    throw new Error(`${answer.status} ${answer.text.slice(0, 160)}`)
  }, { what: 'PUT /api/users/carol after the outage', timeoutMs: 20_000, intervalMs: 500 })
  st.ok(put.status === 200 || put.status === 201, `the admin API creates carol once the API server is back (${put.status} ${put.text.slice(0, 160)})`)
  st.comment(`PUT answered ${Date.now() - created} ms after the first attempt`)
  if (put.status !== 200 && put.status !== 201) return
  st.comment(`carol after the PUT: ${await routedWithMilestones('carol', 90_000)}`)
})

await scenario('spawn on first request and idle culling', async (st) => {
  const upgrade = await helm.run(['upgrade', RELEASE, CHART_DIR, '--namespace', NAMESPACE, '--kubeconfig', cluster.adminKubeconfig,
    '--reuse-values', '--set', 'config.spawnOnDemand=true', '--set', 'config.idleTimeout=5s', '--set', 'config.startTimeout=60s'])
  st.equal(upgrade.code, 0, `helm upgrade: ${upgrade.stderr}`)
  await restartPodgate()
  const first = Date.now()
  const answer = await asUser('dave', '/', { timeoutMs: 70_000 })
  st.equal(answer.status, 200, `the first request for dave is held until dave's pod is ready (${answer.text.slice(0, 160)})`)
  st.equal(answer.body?.user, 'dave', 'and answered by dave\'s backend')
  if (answer.body?.user !== 'dave') return
  st.comment(`spawn on first request: ${Date.now() - first} ms`)
  st.equal((await admin.request('GET', `${WORKLOADS}/user-dave`)).status, 200, 'a UserWorkload for dave was created')

  const idleStarted = Date.now()
  const suspended = await waitFor(async () => {
    const workload = await admin.get<{ spec?: { suspended?: boolean } }>(`${WORKLOADS}/user-dave`)
    const found = await children('dave')
    return workload.spec?.suspended === true && found.pods.length === 0 ? true : undefined
  }, { what: 'dave suspended and his pod gone after 5 s idle', timeoutMs: 90_000, intervalMs: 500 })
  st.ok(suspended, 'dave\'s workload is suspended and his pod removed')
  st.comment(`culled ${Date.now() - idleStarted} ms after the last request`)

  const woken = Date.now()
  const again = await asUser('dave', '/', { timeoutMs: 70_000 })
  st.equal(again.body?.user, 'dave', `the next request wakes dave's workload (${again.status})`)
  st.comment(`wake from suspended: ${Date.now() - woken} ms`)
})

const TENANTS: Release = { namespace: 'gateway', name: 'tenants', fullname: 'tenants-podgate' }
const SERVED = ['team-a', 'team-b'] as const
const UNSERVED = 'team-c'

/**
 * A user's Deployment and Service in a tenant namespace, from the provisioner's own templates
 * and field manager but owned by nothing: another provisioner's, as far as a routing-only
 * gateway knows.
 */
async function applyTenantWorkload (namespace: string, user: string): Promise<void> {
  const profile = loadProfiles(profilesFile).default
  const wanted = desiredChildren({ user, suspended: false, owner: { name: workloadName(user), uid: 'none' }, profile }, { namespace })
  const apply = `fieldManager=${FIELD_MANAGER}&force=true`
  await admin.expect('PATCH', `/apis/apps/v1/namespaces/${namespace}/deployments/${workloadName(user)}?${apply}`, {
    body: { ...wanted.deployment, metadata: { ...wanted.deployment.metadata, ownerReferences: undefined } }, contentType: APPLY_PATCH,
  })
  await admin.expect('PATCH', `/api/v1/namespaces/${namespace}/services/${workloadName(user)}?${apply}`, {
    body: { ...wanted.service, metadata: { ...wanted.service.metadata, ownerReferences: undefined } }, contentType: APPLY_PATCH,
  })
}

/** The user's EndpointSlices in `namespace` and the addresses they list as ready. */
async function tenantSlices (namespace: string, user: string): Promise<{ slices: SliceList['items'], ready: string[] }> {
  const slices = (await admin.get<SliceList>(`/apis/discovery.k8s.io/v1/namespaces/${namespace}/endpointslices?${selector(user)}`)).items
  return { slices, ready: slices.flatMap((slice) => (slice.endpoints ?? []).filter((e) => e.conditions?.ready === true).flatMap((e) => e.addresses)) }
}

/** Waits until the EndpointSlice controller lists one ready pod of the user's in `namespace`; its address. */
async function publishedIn (namespace: string, user: string): Promise<string> {
  return await waitFor(async () => {
    const { slices, ready } = await tenantSlices(namespace, user)
    if (ready.length === 1 && slices.every((slice) => slice.metadata.labels?.[MANAGED_BY_LABEL] === MANAGED_BY && slice.metadata.labels[USER_LABEL] === user)) return ready[0]
    throw new Error(`ready addresses ${JSON.stringify(ready)} in ${slices.length} slices`)
  }, { what: `${user}'s pod published in ${namespace}`, timeoutMs: ROUTE_TIMEOUT_MS, intervalMs: 250 })
}

async function severalNamespacesGauge (): Promise<string> {
  const metrics = await adminApi('GET', '/metrics')
  return /^podgate_users_in_several_namespaces (\S+)$/m.exec(metrics.text)?.[1] ?? `absent (${metrics.status})`
}

await scenario('routing-only gateway across tenant namespaces: served ones routed, the oldest namespace wins a shared user, others never', async (st) => {
  for (const name of [...SERVED, UNSERVED]) await admin.expect('POST', '/api/v1/namespaces', { body: { apiVersion: 'v1', kind: 'Namespace', metadata: { name } } })
  const install = await helm.run(['install', TENANTS.name, CHART_DIR, '--namespace', TENANTS.namespace, '--create-namespace',
    '--kubeconfig', cluster.adminKubeconfig, '--set', 'replicaCount=0', '--set', 'config.provisioner=false',
    '--set', `config.namespaces={${SERVED.join(',')}}`, '--wait', '--timeout', '2m'])
  st.equal(install.code, 0, `helm install of a routing-only gateway serving ${SERVED.join(', ')}: ${install.stderr}`)
  if (install.code !== 0) return

  for (const namespace of [...SERVED, UNSERVED]) {
    const roles = await admin.get<{ items: Named[] }>(`/apis/rbac.authorization.k8s.io/v1/namespaces/${namespace}/roles`)
    const bindings = await admin.get<{ items: Named[] }>(`/apis/rbac.authorization.k8s.io/v1/namespaces/${namespace}/rolebindings`)
    const expected = namespace === UNSERVED ? 0 : 1
    st.equal(roles.items.length + bindings.items.length, 2 * expected, `the chart made ${expected} Role and ${expected} RoleBinding in ${namespace} (${[...roles.items, ...bindings.items].map((o) => o.metadata.name).join(', ') || 'none'})`)
  }
  const tenantApi = new KubeApi({ server: cluster.server, ca: cluster.pki.ca, token: await serviceAccountToken(TENANTS) })
  try {
    for (const namespace of [TENANTS.namespace, ...SERVED]) {
      const path = `/apis/discovery.k8s.io/v1/namespaces/${namespace}/endpointslices`
      st.equal((await tenantApi.request('GET', path)).status, 200, `its ServiceAccount lists EndpointSlices in ${namespace}`)
    }
    for (const path of [
      `/apis/discovery.k8s.io/v1/namespaces/${UNSERVED}/endpointslices`,
      '/apis/discovery.k8s.io/v1/endpointslices',
      `/apis/apps/v1/namespaces/${SERVED[0]}/deployments`,
      `/api/v1/namespaces/${SERVED[0]}/pods`,
      `/apis/podgate.dev/v1alpha1/namespaces/${TENANTS.namespace}/userworkloads`,
    ]) {
      const response = await tenantApi.request('GET', path)
      st.equal(response.status, 403, `GET ${path} is forbidden (${response.status})`)
    }
  } finally {
    await tenantApi.close()
  }

  const restarted = await restartPodgate(TENANTS)
  st.comment(`routing-only podgate ready ${restarted.readyMs} ms after spawn`)

  const applied = Date.now()
  await applyTenantWorkload('team-a', 'ann')
  await applyTenantWorkload('team-b', 'bea')
  await routedTo('ann')
  await routedTo('bea')
  st.comment(`ann (team-a) and bea (team-b) routed ${Date.now() - applied} ms after their apply`)
  for (let i = 0; i < 5; i++) {
    const [a, b] = await Promise.all([asUser('ann'), asUser('bea')])
    st.equal(a.body?.user, 'ann', 'ann\'s token reaches ann\'s backend in team-a')
    st.equal(b.body?.user, 'bea', 'bea\'s token reaches bea\'s backend in team-b')
  }

  // The same user id in both served namespaces, team-b's first: the older wins, not the first by name.
  await applyTenantWorkload('team-b', 'cid')
  await routedTo('cid')
  const olderIp = await publishedIn('team-b', 'cid')
  const olderCreated = Date.parse((await tenantSlices('team-b', 'cid')).slices[0]?.metadata.creationTimestamp ?? '')
  st.ok(Number.isFinite(olderCreated), 'team-b\'s cid slice has a creationTimestamp')
  // creationTimestamp has whole seconds: team-a's must fall in a later one, or the tie goes to team-a by name.
  await waitFor(() => Promise.resolve(Date.now() >= olderCreated + 1_000 ? true : undefined), { what: 'the second after team-b\'s cid slice was created', timeoutMs: 2_000, intervalMs: 50 })
  await applyTenantWorkload('team-a', 'cid')
  const newerIp = await publishedIn('team-a', 'cid')
  const conflict = Date.now()
  const gauge = await waitFor(async () => {
    const value = await severalNamespacesGauge()
    if (value === '1') return value
    throw new Error(`podgate_users_in_several_namespaces ${value}`)
  }, { what: 'podgate_users_in_several_namespaces 1', timeoutMs: 10_000, intervalMs: 200, process: podgate?.process })
  st.equal(gauge, '1', `/metrics counts cid in two namespaces (${Date.now() - conflict} ms after team-a's slice listed the pod)`)
  const warnings = (await readFile(podgate!.process.logFile, 'utf8')).split('\n').filter((line) => line.startsWith('{') && line.includes('several namespaces'))
    .map((line) => JSON.parse(line) as { user?: string, routed?: string, ignored?: string[] }).filter((entry) => entry.user === 'cid')
  st.same(warnings.map(({ routed, ignored }) => ({ routed, ignored })), [{ routed: 'team-b', ignored: ['team-a'] }], 'podgate warned once: cid routed from team-b, team-a ignored')
  // With team-a's backend stopped (SIGSTOP), every answer can only come from team-b's.
  const newer = [...node.runningPods.values()].find((p) => p.ip === newerIp)
  st.ok(newer?.pid, `team-a's cid backend runs on the node at ${newerIp} (team-b's at ${olderIp})`)
  if (newer?.pid === undefined) return
  process.kill(newer.pid, 'SIGSTOP')
  const answers: string[] = []
  try {
    for (let i = 0; i < 10; i++) {
      const answer = await asUser('cid', '/', { timeoutMs: 3_000 }).catch((err: unknown) => ({ status: 0, body: undefined, text: String(err) }))
      answers.push(answer.body?.user === 'cid' ? String(answer.status) : `${answer.status} ${answer.text.slice(0, 80)}`)
    }
  } finally {
    process.kill(newer.pid, 'SIGCONT')
  }
  st.same(answers, Array(10).fill('200'), 'with team-a\'s cid backend frozen, all 10 requests for cid are answered: by team-b\'s, the older')

  // team-b's cid goes (Service and Deployment): team-a's takes over once the slices are gone.
  const removed = Date.now()
  await admin.expect('DELETE', `/api/v1/namespaces/team-b/services/${workloadName('cid')}`)
  await admin.expect('DELETE', `/apis/apps/v1/namespaces/team-b/deployments/${workloadName('cid')}`, { body: { apiVersion: 'v1', kind: 'DeleteOptions', propagationPolicy: 'Background' } })
  await waitFor(async () => {
    const { slices } = await tenantSlices('team-b', 'cid')
    const running = [...node.runningPods.values()].some((p) => p.ip === olderIp)
    if (slices.length === 0 && !running) return true
    throw new Error(`${slices.length} slices left; backend ${running ? 'still running' : 'stopped'}`)
  }, { what: 'team-b\'s cid slices and backend gone', timeoutMs: 30_000, intervalMs: 250 })
  st.comment(`team-b's cid slices and backend gone ${Date.now() - removed} ms after the deletes`)
  const moved = await routedTo('cid', 10_000)
  st.pass(`requests for cid answered by team-a's backend (the only one left) ${Date.now() - removed} ms after the deletes (${moved} ms of polling after the slices went)`)
  st.equal(await severalNamespacesGauge(), '0', 'podgate_users_in_several_namespaces back to 0')

  // A namespace the gateway does not serve is never routed, even with a ready pod published.
  await applyTenantWorkload(UNSERVED, 'dex')
  await publishedIn(UNSERVED, 'dex')
  const statuses: number[] = []
  for (let i = 0; i < 5; i++) statuses.push((await asUser('dex')).status)
  st.same(statuses, Array(5).fill(404), `dex, published in ${UNSERVED}, is 404`)

  // Deleting a served namespace: the namespace controller removes bea's objects, and her route.
  const deleting = Date.now()
  await admin.expect('DELETE', '/api/v1/namespaces/team-b')
  const gone = await waitFor(async () => {
    const answer = await asUser('bea')
    if (answer.status === 404) return Date.now() - deleting
    throw new Error(`${answer.status} ${answer.text.slice(0, 120)}`)
  }, { what: 'bea 404 after namespace team-b is deleted', timeoutMs: 90_000, intervalMs: 250, process: podgate?.process })
  st.pass(`bea is 404 ${gone} ms after namespace team-b was deleted`)
  st.equal((await asUser('ann')).body?.user, 'ann', 'ann (team-a) is untouched')
})

const TENANCY: Release = { namespace: 'tenancy', name: 'tenancy', fullname: 'tenancy-podgate' }
const TEAM_D = 'team-d'
const TEAM_E = 'team-e'
/** Exists, but is not among the provisioning release's config.namespaces. */
const TEAM_F = 'team-f'

interface Selector { matchLabels?: Record<string, string> }
interface NetworkPolicyObject { spec: { ingress?: Array<{ from?: Array<{ podSelector?: Selector, namespaceSelector?: Selector }> }> } }
interface UserWorkloadObject extends Named { metadata: Named['metadata'] & { namespace: string }, spec: { user: string }, status?: { phase?: string, message?: string, conditions?: Array<{ type: string, status: string, reason?: string }> } }

/** The kinds of `user`'s objects (UserWorkload and the reconciler's children) that exist in `namespace`. */
async function objectsIn (namespace: string, user: string): Promise<string[]> {
  const name = workloadName(user)
  const paths: Array<[string, string]> = [
    ['UserWorkload', `/apis/podgate.dev/v1alpha1/namespaces/${namespace}/userworkloads/${name}`],
    ['Deployment', `/apis/apps/v1/namespaces/${namespace}/deployments/${name}`],
    ['Service', `/api/v1/namespaces/${namespace}/services/${name}`],
    ['NetworkPolicy', `/apis/networking.k8s.io/v1/namespaces/${namespace}/networkpolicies/${name}`],
  ]
  const present: string[] = []
  for (const [kind, path] of paths) {
    const response = await admin.request('GET', path)
    if (response.status === 200) present.push(kind)
    else if (response.status !== 404) throw new Error(`GET ${path}: ${response.status}`)
  }
  return present
}

function selects (selector: Selector | undefined, labels: Record<string, string> | undefined): boolean {
  return selector?.matchLabels !== undefined && Object.entries(selector.matchLabels).every(([key, value]) => labels?.[key] === value)
}

async function namespaceLabels (name: string): Promise<Record<string, string> | undefined> {
  return (await admin.get<{ metadata: { labels?: Record<string, string> } }>(`/api/v1/namespaces/${name}`)).metadata.labels
}

await scenario('provisioner across tenant namespaces: admin API and spawn into each, a user id claimed twice, RBAC only where served, a tenant namespace deleted', async (st) => {
  const steps: string[] = []
  const timed = async <T>(what: string, fn: () => Promise<T>): Promise<T> => {
    const started = Date.now()
    try {
      return await fn()
    } finally {
      steps.push(`${what} ${Date.now() - started} ms`)
      st.comment(`${what}: ${Date.now() - started} ms`)
    }
  }
  const tenants = [TEAM_D, TEAM_E]
  const workloadPaths = (namespace: string): string => `/apis/podgate.dev/v1alpha1/namespaces/${namespace}/userworkloads`

  // 1. The tenant namespaces first (a Role in a missing namespace fails the install), then a provisioning release serving them.
  const installed = await timed('namespaces and helm install', async () => {
    for (const name of [...tenants, TEAM_F]) await admin.expect('POST', '/api/v1/namespaces', { body: { apiVersion: 'v1', kind: 'Namespace', metadata: { name } } })
    return await helm.run(['install', TENANCY.name, CHART_DIR, '--namespace', TENANCY.namespace, '--create-namespace',
      '--kubeconfig', cluster.adminKubeconfig, '--set', 'replicaCount=0', '--set', 'config.provisioner=true',
      '--set', `config.namespaces={${tenants.join(',')}}`, '--set', 'config.spawnOnDemand=true', '--set', 'config.startTimeout=60s',
      '--set', `auth.tenantClaim=${TENANT_CLAIM}`, '--wait', '--timeout', '2m'])
  })
  st.equal(installed.code, 0, `helm install of a provisioning release in ${TENANCY.namespace} serving ${tenants.join(', ')}: ${installed.stderr}`)
  if (installed.code !== 0) return
  for (const namespace of [...tenants, TEAM_F]) {
    const roles = await admin.get<{ items: Named[] }>(`/apis/rbac.authorization.k8s.io/v1/namespaces/${namespace}/roles`)
    const bindings = await admin.get<{ items: Named[] }>(`/apis/rbac.authorization.k8s.io/v1/namespaces/${namespace}/rolebindings`)
    const expected = namespace === TEAM_F ? 0 : 1
    st.equal(roles.items.length + bindings.items.length, 2 * expected, `the chart made ${expected} Role and ${expected} RoleBinding in ${namespace} (${[...roles.items, ...bindings.items].map((o) => o.metadata.name).join(', ') || 'none'})`)
  }
  // The routing-only gateway of the previous scenario is stopped here; each release's Lease is in its own namespace anyway.
  const restarted = await timed('podgate start', async () => await restartPodgate(TENANCY))
  st.comment(`provisioning podgate ready ${restarted.readyMs} ms after spawn`)

  // 2. dana through the namespaced admin API in team-d, emil spawned by a request whose tenant is team-e.
  await timed('dana (admin API, team-d) and emil (spawn, team-e) routed', async () => {
    const put = await adminApi('PUT', `/api/namespaces/${TEAM_D}/users/dana`, {})
    st.equal(put.status, 201, `PUT /api/namespaces/${TEAM_D}/users/dana: ${put.status} ${put.text.slice(0, 200)}`)
    st.equal((JSON.parse(put.text) as { namespace?: string }).namespace, TEAM_D, 'the admin API answers with dana\'s workload in team-d')
    const [danaMs, spawned] = await Promise.all([
      routedTo('dana', ROUTE_TIMEOUT_MS, TEAM_D),
      (async () => {
        const started = Date.now()
        const answer = await asUser('emil', '/', { tenant: TEAM_E, timeoutMs: 70_000 })
        return { answer, ms: Date.now() - started }
      })(),
    ])
    st.comment(`dana routed ${danaMs} ms after the PUT; emil's first request answered in ${spawned.ms} ms`)
    st.equal(spawned.answer.status, 200, `emil's first request (tenant ${TEAM_E}) is held until his pod is ready (${spawned.answer.text.slice(0, 160)})`)
    st.equal(spawned.answer.body?.user, 'emil', 'and answered by emil\'s backend')
  })
  for (let i = 0; i < 3; i++) {
    const [d, e] = await Promise.all([asUser('dana', '/', { tenant: TEAM_D }), asUser('emil', '/', { tenant: TEAM_E })])
    st.equal(d.body?.user, 'dana', 'dana\'s token (tenant team-d) reaches dana\'s backend')
    st.equal(e.body?.user, 'emil', 'emil\'s token (tenant team-e) reaches emil\'s backend')
  }
  const wrongTenant = await asUser('dana', '/', { tenant: TEAM_E })
  st.equal(wrongTenant.status, 403, `dana with a team-e token is refused (${wrongTenant.text.slice(0, 120)})`)
  const unserved = await asUser('finn', '/', { tenant: TEAM_F, timeoutMs: 10_000 })
  st.same([unserved.status, unserved.body?.error], [403, 'PODGATE_FORBIDDEN'], `a first request with tenant ${TEAM_F} (not served) spawns nothing: ${unserved.text.slice(0, 160)}`)
  st.same(await objectsIn(TEAM_F, 'finn'), [], `no UserWorkload for finn in ${TEAM_F}`)

  const all = ['UserWorkload', 'Deployment', 'Service', 'NetworkPolicy']
  st.same(await objectsIn(TEAM_D, 'dana'), all, `dana's UserWorkload, Deployment, Service and NetworkPolicy are in ${TEAM_D}`)
  st.same(await objectsIn(TEAM_E, 'emil'), all, `emil's UserWorkload, Deployment, Service and NetworkPolicy are in ${TEAM_E}`)
  st.same([await objectsIn(TEAM_E, 'dana'), await objectsIn(TEAM_D, 'emil'), await objectsIn(TENANCY.namespace, 'dana'), await objectsIn(TENANCY.namespace, 'emil')], [[], [], [], []],
    'neither has objects in the other tenant\'s namespace or in podgate\'s own')
  const gatewayPods = (await admin.get<{ spec: { selector: Selector } }>(`/apis/apps/v1/namespaces/${TENANCY.namespace}/deployments/${TENANCY.fullname}`)).spec.selector
  const own = await namespaceLabels(TENANCY.namespace)
  for (const [namespace, user] of [[TEAM_D, 'dana'], [TEAM_E, 'emil']] as const) {
    const policy = await admin.get<NetworkPolicyObject>(`/apis/networking.k8s.io/v1/namespaces/${namespace}/networkpolicies/${workloadName(user)}`)
    const from = policy.spec.ingress?.flatMap((rule) => rule.from ?? []) ?? []
    st.same(from, [{ podSelector: { matchLabels: gatewayPods.matchLabels }, namespaceSelector: { matchLabels: { 'kubernetes.io/metadata.name': TENANCY.namespace } } }],
      `${user}'s NetworkPolicy admits the chart's gateway pods from ${TENANCY.namespace} only`)
    st.ok(selects(from[0]?.namespaceSelector, own), `its namespaceSelector selects namespace ${TENANCY.namespace}`)
    st.notOk(selects(from[0]?.namespaceSelector, await namespaceLabels(namespace)), `and not ${namespace}, the user's own`)
  }

  // 3. dana claimed in team-e as well, later: refused there with a status saying why, no children; team-d's keeps serving.
  const refused = await timed('a second claim on dana refused', async () => {
    await admin.expect('POST', workloadPaths(TEAM_E), {
      body: { apiVersion: 'podgate.dev/v1alpha1', kind: 'UserWorkload', metadata: { name: workloadName('dana') }, spec: { user: 'dana' } },
    })
    return await waitFor(async () => {
      const workload = await admin.get<UserWorkloadObject>(`${workloadPaths(TEAM_E)}/${workloadName('dana')}`)
      if (workload.status?.phase === 'Failed') return workload
      throw new Error(`status ${JSON.stringify(workload.status ?? null)}`)
    }, { what: `team-e's dana Failed`, timeoutMs: 20_000, intervalMs: 200, process: podgate?.process })
  })
  const ready = refused.status?.conditions?.find((c) => c.type === 'Ready')
  st.same([ready?.status, ready?.reason], ['False', 'UserInAnotherNamespace'], `its Ready condition is False with reason UserInAnotherNamespace (${JSON.stringify(ready)})`)
  st.ok(refused.status?.message?.startsWith(`user dana already has a workload in namespace ${TEAM_D}`), `its message names team-d: ${refused.status?.message ?? '(none)'}`)
  st.same(await objectsIn(TEAM_E, 'dana'), ['UserWorkload'], `no Deployment, Service or NetworkPolicy for dana in ${TEAM_E}`)
  st.equal((await admin.get<PodList>(`/api/v1/namespaces/${TEAM_E}/pods?${selector('dana')}`)).items.length, 0, `and no pod for dana in ${TEAM_E}`)
  for (let i = 0; i < 3; i++) st.equal((await asUser('dana', '/', { tenant: TEAM_D })).body?.user, 'dana', 'dana is still served from team-d')
  const conflict = await adminApi('PUT', `/api/namespaces/${TEAM_E}/users/dana`, {})
  st.same([conflict.status, (JSON.parse(conflict.text) as { error?: string }).error], [409, 'PODGATE_CONFLICT'], `PUT /api/namespaces/${TEAM_E}/users/dana: ${conflict.text.slice(0, 200)}`)
  const again = await adminApi('PUT', `/api/namespaces/${TEAM_D}/users/dana`, {})
  st.equal(again.status, 200, `PUT /api/namespaces/${TEAM_D}/users/dana again is 200 (${again.text.slice(0, 120)})`)
  const outside = await adminApi('PUT', `/api/namespaces/${TEAM_F}/users/finn`, {})
  st.equal(outside.status, 400, `PUT into ${TEAM_F}, not served, is 400 (${outside.text.slice(0, 160)})`)

  // 4. `kubectl get uw -A`: every tenant's workloads in one cluster-wide list.
  const listed = await admin.get<{ items: UserWorkloadObject[] }>('/apis/podgate.dev/v1alpha1/userworkloads')
  const tenancyWorkloads = listed.items.filter((w) => tenants.includes(w.metadata.namespace)).map((w) => `${w.metadata.namespace}/${w.spec.user}`).sort()
  st.same(tenancyWorkloads, [`${TEAM_D}/dana`, `${TEAM_E}/dana`, `${TEAM_E}/emil`], 'UserWorkloads listed across namespaces: both tenants\', the refused claim included')

  // 5. The chart's ServiceAccount: Deployments in a served namespace, nothing in a third one or cluster-wide.
  const tenancyApi = new KubeApi({ server: cluster.server, ca: cluster.pki.ca, token: await serviceAccountToken(TENANCY) })
  try {
    await timed('RBAC checks', async () => {
      const deployment = { apiVersion: 'apps/v1', kind: 'Deployment', metadata: { name: 'rbac-probe' }, spec: { selector: { matchLabels: { a: 'b' } }, template: { metadata: { labels: { a: 'b' } }, spec: { containers: [{ name: 'c', image: 'i' }] } } } }
      for (const namespace of [...tenants, TEAM_F, TENANCY.namespace, NAMESPACE]) {
        const response = await tenancyApi.request('POST', `/apis/apps/v1/namespaces/${namespace}/deployments?dryRun=All`, { body: deployment })
        const expected = tenants.includes(namespace) ? 201 : 403
        st.equal(response.status, expected, `a dry-run Deployment create in ${namespace} is ${expected} (${response.status})`)
      }
      for (const path of ['/apis/apps/v1/deployments', '/apis/podgate.dev/v1alpha1/userworkloads', `/apis/podgate.dev/v1alpha1/namespaces/${TEAM_F}/userworkloads`]) {
        const response = await tenancyApi.request('GET', path)
        st.equal(response.status, 403, `GET ${path} is forbidden (${response.status})`)
      }
      const review = async (namespace: string): Promise<boolean | undefined> => (await tenancyApi.expect<{ status?: { allowed?: boolean } }>('POST', '/apis/authorization.k8s.io/v1/selfsubjectaccessreviews', {
        body: { apiVersion: 'authorization.k8s.io/v1', kind: 'SelfSubjectAccessReview', spec: { resourceAttributes: { verb: 'create', group: 'apps', resource: 'deployments', namespace } } },
      })).status?.allowed
      st.same([await review(TEAM_D), await review(TEAM_F), await review('')], [true, false, false], 'SelfSubjectAccessReview, create Deployments: allowed in team-d, not in team-f, not in every namespace')
    })
  } finally {
    await tenancyApi.close()
  }

  // 6. team-e deleted: the namespace controller removes emil's objects (and the refused claim), and with them his route.
  const danaFailures: string[] = []
  const deleting = Date.now()
  await admin.expect('DELETE', `/api/v1/namespaces/${TEAM_E}`)
  const routeGone = await timed('team-e deleted → emil\'s route gone', async () => await waitFor(async () => {
    // A request meanwhile may wait on a spawn, bounded by the client's timeout here.
    const answer = await asUser('emil', '/', { tenant: TEAM_E, timeoutMs: 3_000 }).catch((err: unknown) => ({ status: 0, body: undefined, text: String(err) }))
    const dana = await asUser('dana', '/', { tenant: TEAM_D })
    if (dana.status !== 200 || dana.body?.user !== 'dana') danaFailures.push(`${dana.status} ${dana.text.slice(0, 80)}`)
    const left = await objectsIn(TEAM_E, 'emil')
    if ((answer.status === 404 || answer.status === 503) && answer.body?.user === undefined && left.length === 0) return { status: answer.status, ms: Date.now() - deleting }
    throw new Error(`emil ${answer.status} ${answer.text.slice(0, 120)}; still in ${TEAM_E}: ${left.join(', ') || 'nothing'}`)
  }, { what: `emil's objects gone and his route removed after namespace ${TEAM_E} is deleted`, timeoutMs: 90_000, intervalMs: 250, process: podgate?.process }))
  st.pass(`emil's objects are gone and his requests answered ${routeGone.status} ${routeGone.ms} ms after namespace ${TEAM_E} was deleted`)
  st.same(danaFailures, [], 'every request for dana (team-d) was answered by dana\'s backend meanwhile')
  st.equal((await asUser('dana', '/', { tenant: TEAM_D })).body?.user, 'dana', 'dana (team-d) is untouched')
  const namespaceGone = await timed('team-e itself gone', async () => await waitFor(async () => {
    const response = await admin.request('GET', `/api/v1/namespaces/${TEAM_E}`)
    if (response.status === 404) return Date.now() - deleting
    throw new Error(`${response.status} ${(response.body as { status?: { phase?: string } } | undefined)?.status?.phase ?? ''}`)
  }, { what: `namespace ${TEAM_E} removed`, timeoutMs: 60_000, intervalMs: 250 }))
  st.pass(`namespace ${TEAM_E} is gone ${namespaceGone} ms after its delete`)
  // Spawn on demand is still on for team-e (still listed): a new request tries, is answered without a backend, and leaves nothing behind.
  const later = await asUser('emil', '/', { tenant: TEAM_E, timeoutMs: 10_000 })
  st.ok((later.status === 404 || later.status === 503) && later.body?.user === undefined, `a request for emil now is ${later.status} (${later.text.slice(0, 160)})`)
  st.same(await objectsIn(TEAM_E, 'emil'), [], 'and recreates nothing in team-e')
  const teamD = await adminApi('GET', `/api/namespaces/${TEAM_D}/users`)
  st.equal(teamD.status, 200, `GET /api/namespaces/${TEAM_D}/users with ${TEAM_E} gone: ${teamD.status} ${teamD.text.slice(0, 160)}`)
  const everyone = await adminApi('GET', '/api/users')
  st.equal(everyone.status, 200, `GET /api/users lists what it can read with ${TEAM_E} gone`)
  const gone = await adminApi('GET', `/api/namespaces/${TEAM_E}/users`)
  st.equal(gone.status, 404, `the gone namespace's own list says why: ${gone.text.slice(0, 160)}`)
  st.comment(`tenancy scenario steps: ${steps.join('; ')}`)
})
