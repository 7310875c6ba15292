// Per-profile limits: a profile's rateLimit, rateBurst and maxConcurrentPerUser replace the
// global ones for its users. The whole chain runs for real: the provisioner labels each user's
// Service with the profile, the simulated EndpointSlice controller copies the label onto the
// slice as Kubernetes does, the gateway's informer reads it, and the limiter applies the
// profile's limits read from PODGATE_PROFILES; a profile change follows the same way.
import { once } from 'node:events'
import { mkdtemp, rm, writeFile } from 'node:fs/promises'
import type { IncomingMessage } from 'node:http'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import t from 'tap'
import WebSocket from 'ws'
import { startKubernetesProvisioner } from '../../src/controller/provisioner.ts'
import { parseProfiles } from '../../src/controller/profiles.ts'
import { loadConfig } from '../../src/config.ts'
import { EndpointIndex } from '../../src/discovery/endpoint-slices.ts'
import { endpoint, type Endpoint } from '../../src/discovery/source.ts'
import { gatewayLimits, withProfileLimits } from '../../src/gateway/profile-limits.ts'
import { createBackend } from '../../src/local/backend.ts'
import { createLogger } from '../../src/log.ts'
import { Metrics } from '../../src/metrics.ts'
import { RelayedSource } from '../../src/workers/relayed-source.ts'
import { toWireRoutes } from '../../src/workers/messages.ts'
import { FakeKubeServer } from '../support/fake-kube.ts'
import { sliceFor } from '../support/fake-kube-slices.ts'
import { startKubernetesSource, waitForSnapshot } from '../support/fake-kube-source.ts'
import { startTestGateway, type TestGateway } from '../support/gateway.ts'
import { kubeConfigFor } from '../support/kubeconfig.ts'
import { ManualClock } from '../support/manual-clock.ts'
import { FAST_PROVISIONER_TIMINGS } from '../support/provisioner.ts'
import { SimulatedController } from '../support/simulated-controller.ts'

const PROFILES_YAML = `
standard:
  default: true
  image: podgate-backend:test
small:
  image: podgate-backend:test
  rateLimit: 2/m
  rateBurst: 2
large:
  image: podgate-backend:test
  rateLimit: 10/s
  rateBurst: 5
  maxConcurrentPerUser: 1
`

async function tempFile (t: { teardown (fn: () => unknown): void }, name: string, text: string): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'podgate-profile-limits-'))
  t.teardown(() => rm(dir, { recursive: true, force: true }))
  const file = join(dir, name)
  await writeFile(file, text)
  return file
}

async function status (gw: TestGateway, token: string): Promise<{ status: number, retryAfter: string | null }> {
  const res = await fetch(gw.url, { headers: { authorization: `Bearer ${token}` } })
  await res.arrayBuffer()
  return { status: res.status, retryAfter: res.headers.get('retry-after') }
}

/** How many of `n` requests in a row pass, and the Retry-After of the first refusal. */
async function passing (gw: TestGateway, token: string, n: number): Promise<{ passed: number, retryAfter: string | null }> {
  let passed = 0
  let retryAfter: string | null = null
  for (let i = 0; i < n; i++) {
    const res = await status(gw, token)
    if (res.status === 200) passed++
    else if (retryAfter === null) retryAfter = res.retryAfter
  }
  return { passed, retryAfter }
}

void t.test('users of two profiles get their profile\'s limits through a real gateway; a profile change takes effect', async (t) => {
  const server = await FakeKubeServer.start({ bookmarkIntervalMs: 100 })
  const simulated = await SimulatedController.start(server)
  const provisioner = startKubernetesProvisioner({
    config: { profilesFile: undefined },
    kubeConfig: kubeConfigFor(server),
    namespace: 'default',
    logger: createLogger('silent'),
    metrics: new Metrics({ defaultMetrics: false }),
    identity: 'replica-a',
    profiles: parseProfiles(PROFILES_YAML),
    ...FAST_PROVISIONER_TIMINGS,
  })
  t.teardown(async () => {
    await provisioner.close()
    await simulated.close()
    await server.stop()
  })
  const { source } = await startKubernetesSource(t, server)
  const clock = new ManualClock()
  const profilesFile = await tempFile(t, 'profiles.yaml', PROFILES_YAML)
  // Everyone else: 3 a minute.
  const gw = await startTestGateway(t, { PODGATE_RATE_LIMIT: '3/m', PODGATE_RATE_BURST: '3', PODGATE_PROFILES: profilesFile }, { source, clock })

  await provisioner.workloads.put('alice', { profile: 'small' })
  await provisioner.workloads.put('bob', { profile: 'large' })
  await provisioner.workloads.put('carol', {})
  await waitForSnapshot(source, (s) => ['alice', 'bob', 'carol'].every((user) => (s.get(user)?.length ?? 0) > 0), 'three routable users', 10_000)
  t.same(['alice', 'bob', 'carol'].map((user) => source.profileOf(user)), ['small', 'large', 'standard'], 'the profile label reached the gateway through the EndpointSlices')
  const service = server.get('v1/services', 'default', 'user-alice')
  t.equal(service?.metadata?.labels?.['podgate.dev/profile'], 'small', 'the provisioner labels the Service')

  const [alice, bob, carol] = await Promise.all(['alice', 'bob', 'carol'].map((user) => gw.token(user)))
  t.same(await passing(gw, alice!, 4), { passed: 2, retryAfter: '30' }, 'small: 2 a minute, a burst of 2')
  t.same(await passing(gw, bob!, 7), { passed: 5, retryAfter: '1' }, 'large: 10/s with a burst of 5')
  t.same(await passing(gw, carol!, 5), { passed: 3, retryAfter: '20' }, 'a profile without limits: the global 3/m')

  await provisioner.workloads.put('alice', { profile: 'large' })
  await waitForSnapshot(source, () => source.profileOf('alice') === 'large', 'alice relabelled', 10_000)
  t.equal((await status(gw, alice!)).retryAfter, '1', 'her empty bucket now refills at large\'s rate')
  await clock.advance(500)
  t.same(await passing(gw, alice!, 7), { passed: 5, retryAfter: '1' }, 'half a second later: large\'s burst of 5, where small would have given nothing')
  t.same(await passing(gw, carol!, 1), { passed: 0, retryAfter: '20' }, 'other users keep their buckets')
})

void t.test('a profile\'s concurrency cap holds its users\' WebSockets; others have none', async (t) => {
  const profilesFile = await tempFile(t, 'profiles.yaml', PROFILES_YAML)
  const profiles = new Map([['bob', 'large'], ['carol', 'standard']])
  const snapshot = new Map<string, readonly Endpoint[]>()
  for (const user of profiles.keys()) {
    const backend = await createBackend({ user })
    t.teardown(() => backend.close())
    snapshot.set(user, [endpoint('127.0.0.1', backend.address.port)])
  }
  // A relayed source, as a gateway worker has: the profiles travel with the routes.
  const source = new RelayedSource(structuredClone(toWireRoutes(snapshot, undefined, { profileOf: (user) => profiles.get(user) })), true)
  const relayed = await startTestGateway(t, { PODGATE_PROFILES: profilesFile }, { source })
  t.equal(source.profileOf('bob'), 'large')

  const bob = await relayed.token('bob')
  const ws = new WebSocket(`${relayed.url.replace('http', 'ws')}/ws`, { headers: { authorization: `Bearer ${bob}` } })
  t.teardown(() => { ws.terminate() })
  await once(ws, 'open')
  t.same(await status(relayed, bob), { status: 429, retryAfter: '1' }, 'bob\'s open WebSocket holds large\'s one slot')
  const second = new WebSocket(`${relayed.url.replace('http', 'ws')}/ws`, { headers: { authorization: `Bearer ${bob}` } })
  const [, refused] = await once(second, 'unexpected-response') as [unknown, IncomingMessage]
  refused.resume()
  t.equal(refused.statusCode, 429, 'and a second upgrade is refused')

  const carol = await relayed.token('carol')
  const sockets = await Promise.all([0, 1, 2].map(async () => {
    const socket = new WebSocket(`${relayed.url.replace('http', 'ws')}/ws`, { headers: { authorization: `Bearer ${carol}` } })
    t.teardown(() => { socket.terminate() })
    await once(socket, 'open')
    return socket
  }))
  t.equal(sockets.length, 3, 'carol\'s profile sets no cap, and neither does the environment')
  t.equal((await status(relayed, carol)).status, 200)

  // Bob moves to a profile without a cap: the relay carries the change.
  source.apply(structuredClone(toWireRoutes(snapshot, ['bob'], { profileOf: () => 'standard' })))
  t.equal((await status(relayed, bob)).status, 200, 'no cap for bob once his profile has none')
})

void t.test('the endpoint index: a user\'s profile from the slices\' label, a relabel is a change', (t) => {
  const index = new EndpointIndex()
  const slice = (name: string, profile: string | undefined, resourceVersion: string): ReturnType<typeof sliceFor> => {
    const object = sliceFor('alice', ['10.0.0.1'], { name, labels: { 'podgate.dev/profile': profile } })
    object.metadata = { ...object.metadata, resourceVersion }
    return object
  }
  index.upsert(slice('user-alice-a', 'small', '1'))
  const first = index.apply(new Map())
  t.equal(index.profileOf('alice'), 'small')
  index.upsert(slice('user-alice-a', 'large', '2'))
  const second = index.apply(first)
  t.not(second, first, 'the same endpoints with another profile: a new snapshot')
  t.same([...index.changed], ['alice'], 'alice changed')
  t.equal(index.profileOf('alice'), 'large')
  index.upsert(slice('user-alice-b', 'batch', '3'))
  index.apply(second)
  t.equal(index.profileOf('alice'), 'batch', 'slices that disagree (mid-relabel): the least name, the same on every replica')
  index.remove(slice('user-alice-b', 'batch', '3'))
  index.upsert(slice('user-alice-a', undefined, '4'))
  index.apply(second)
  t.equal(index.profileOf('alice'), undefined, 'an unlabelled Service: no profile, the global limits')
  index.remove(slice('user-alice-a', undefined, '4'))
  index.apply(second)
  t.equal(index.profileOf('alice'), undefined, 'gone from the snapshot: forgotten')
  t.end()
})

void t.test('the global limits with each profile\'s own in their place', (t) => {
  const global = { perSecond: 5, burst: 10, maxConcurrent: 4 }
  const profiles = parseProfiles(`
plain: { image: x:1 }
fast: { image: x:1, rateLimit: 600/m }
bursty: { image: x:1, rateLimit: 1/s, rateBurst: 50 }
unlimited: { image: x:1, rateLimit: off, maxConcurrentPerUser: 0 }
capped: { image: x:1, maxConcurrentPerUser: 2 }
helm: { image: x:1, rateLimit: false }
`)
  const all = profiles.names.map((name) => profiles.get(name)!)
  t.equal(withProfileLimits(global, [profiles.get('plain')!]), global, 'profiles without limits change nothing')
  t.same(withProfileLimits(global, all), {
    ...global,
    profiles: {
      fast: { perSecond: 10, burst: 10, maxConcurrent: 4 },
      bursty: { perSecond: 1, burst: 50, maxConcurrent: 4 },
      unlimited: { perSecond: undefined, burst: 1, maxConcurrent: 0 },
      capped: { perSecond: 5, burst: 10, maxConcurrent: 2 },
      helm: { perSecond: undefined, burst: 1, maxConcurrent: 4 },
    },
  }, 'a profile\'s rate comes with its own burst (default: one second\'s worth); what it leaves out is the global setting')
  t.same(withProfileLimits(undefined, all)?.profiles?.capped, { perSecond: undefined, burst: 1, maxConcurrent: 2 }, 'with no global limits, only the profiles\' own')
  t.match(withProfileLimits(undefined, all), { perSecond: undefined, maxConcurrent: 0 }, 'and everyone else is not limited')
  t.equal(withProfileLimits(undefined, [profiles.get('plain')!]), undefined, 'nothing limited at all: no limiter')
  t.end()
})

void t.test('bad limits in a profile are ConfigErrors naming PODGATE_PROFILES and the field', async (t) => {
  const cases: Array<[string, RegExp]> = [
    ['a: { image: x:1, rateLimit: 50 }', /^PODGATE_PROFILES: profiles\.a\.rateLimit: expected a positive number of requests per s, m or h, such as 50\/s or 600\/m, or off, got number 50$/],
    ['a: { image: x:1, rateLimit: 0/s }', /^PODGATE_PROFILES: profiles\.a\.rateLimit: expected/],
    ['a: { image: x:1, rateLimit: fast }', /^PODGATE_PROFILES: profiles\.a\.rateLimit: .* got "fast"$/],
    ['a: { image: x:1, rateLimit: 5/s, rateBurst: 0 }', /^PODGATE_PROFILES: profiles\.a\.rateBurst: expected an integer from 1 to 1000000, got number 0$/],
    ['a: { image: x:1, rateLimit: 5/s, rateBurst: "10" }', /^PODGATE_PROFILES: profiles\.a\.rateBurst: expected an integer/],
    ['a: { image: x:1, rateBurst: 10 }', /^PODGATE_PROFILES: profiles\.a\.rateBurst: has no effect without rateLimit in the same profile$/],
    ['a: { image: x:1, rateLimit: off, rateBurst: 10 }', /^PODGATE_PROFILES: profiles\.a\.rateBurst: has no effect with rateLimit: off$/],
    ['a: { image: x:1, maxConcurrentPerUser: -1 }', /^PODGATE_PROFILES: profiles\.a\.maxConcurrentPerUser: expected an integer from 0 \(no cap\) to 1000000, got number -1$/],
    ['a: { image: x:1, maxConcurrentPerUser: 2.5 }', /^PODGATE_PROFILES: profiles\.a\.maxConcurrentPerUser: expected an integer/],
    ['profiles:\n  - { name: a, image: x:1 }\n  - { name: b, image: x:1, rateLimit: 10/d }\n', /^PODGATE_PROFILES: profiles\[1\]\.rateLimit: expected/],
    ['a: { image: x:1, burst: 10 }', /^PODGATE_PROFILES: profiles\.a\.burst: unknown field \(did you mean rateBurst\?\)/],
  ]
  for (const [yaml, message] of cases) {
    t.throws(() => parseProfiles(yaml), { name: 'ConfigError', variable: 'PODGATE_PROFILES', message }, yaml)
  }
  const file = await tempFile(t, 'bad.yaml', 'a: { image: x:1, rateLimit: lots }\n')
  const base = { PODGATE_JWT_SECRET: 'x'.repeat(32), PODGATE_PROVISIONER: 'false' }
  await t.rejects(gatewayLimits(loadConfig({ ...base, PODGATE_PROFILES: file })), { name: 'ConfigError', variable: 'PODGATE_PROFILES', message: /profiles\.a\.rateLimit: .* got "lots"$/ }, 'a gateway, routing-only too, refuses to start on a bad file')
  t.equal(await gatewayLimits(loadConfig(base)), undefined, 'no file and no variables: nothing limited')
  t.same(await gatewayLimits(loadConfig({ ...base, PODGATE_MAX_CONCURRENT_PER_USER: '3' })), { perSecond: undefined, burst: 1, maxConcurrent: 3 }, 'no file: the global limits alone')
})
