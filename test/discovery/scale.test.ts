// 10,000 users through the fake API server and the real client, in one namespace and over 20:
// correctness is asserted, time and heap are reported (t.comment), never asserted — machines differ.
import { setFlagsFromString } from 'node:v8'
import { runInNewContext } from 'node:vm'
import t, { type Test } from 'tap'
import { EndpointIndex, type EndpointSliceLike } from '../../src/discovery/endpoint-slices.ts'
import { changedUsers, type EndpointSnapshot } from '../../src/discovery/source.ts'
import { FakeKubeServer, sliceFor } from '../support/fake-kube.ts'
import { originsOf, startKubernetesSource, waitForSnapshot } from '../support/fake-kube-source.ts'

const USERS = 10_000

// A forced collection makes the heap numbers mean something; this file runs in its own process.
setFlagsFromString('--expose-gc')
const collect = runInNewContext('gc') as () => void

function heapMiB (): number {
  collect()
  collect()
  return process.memoryUsage().heapUsed / 1024 / 1024
}

function user (i: number): string {
  return `user-${String(i).padStart(5, '0')}`
}

function addresses (i: number): string[] {
  return [`10.${(i >> 8) & 255}.${i & 255}.1`, `10.${(i >> 8) & 255}.${i & 255}.2`]
}

function namespaceOf (i: number, namespaces: number): string {
  return namespaces === 1 ? 'default' : `tenant-${String(i % namespaces).padStart(2, '0')}`
}

/** Sync, heap, one event and a burst for USERS users spread evenly over `namespaces` namespaces (one informer each). */
async function syncAndChange (t: Test, namespaces: number): Promise<void> {
  const server = await FakeKubeServer.start({ bookmarkIntervalMs: 1000 })
  t.teardown(() => server.stop())
  for (let i = 0; i < USERS; i++) server.put(sliceFor(user(i), addresses(i), { name: `slice-${i}`, namespace: namespaceOf(i, namespaces) }))
  // Lets the sockets an earlier run closed be released, so they do not count against this one.
  await new Promise((resolve) => setTimeout(resolve, 100))
  const before = heapMiB()

  const started = performance.now()
  const { source } = await startKubernetesSource(t, server, { namespaces: Array.from({ length: namespaces }, (_, n) => namespaceOf(n, namespaces)) })
  await source.synced
  const syncMs = performance.now() - started
  const after = heapMiB()

  t.equal(source.snapshot.size, USERS, 'every user is routable')
  let correct = 0
  for (let i = 0; i < USERS; i++) {
    const origins = originsOf(source.snapshot, user(i))
    if (origins.length === 2 && origins[0] === `http://${addresses(i)[0] ?? ''}:8080` && origins[1] === `http://${addresses(i)[1] ?? ''}:8080` && source.namespaceOf(user(i)) === namespaceOf(i, namespaces)) correct++
  }
  t.equal(correct, USERS, 'every user has exactly its two endpoints, from its own namespace')
  t.equal(source.usersInSeveralNamespaces, 0)

  const deadline = Date.now() + 10_000
  while (server.openWatches < namespaces && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 5))
  t.equal(server.openWatches, namespaces, 'one watch per namespace')
  const latencies: number[] = []
  for (let round = 0; round < 20; round++) {
    const eventStart = performance.now()
    server.put(sliceFor(user(42), [`10.200.0.${round + 1}`], { name: 'slice-42', namespace: namespaceOf(42, namespaces) }))
    await waitForSnapshot(source, (s) => originsOf(s, user(42))[0] === `http://10.200.0.${round + 1}:8080`, 'the changed user')
    latencies.push(performance.now() - eventStart)
  }
  latencies.sort((a, b) => a - b)
  const eventMs = latencies[Math.floor(latencies.length / 2)] ?? Number.NaN

  let swaps = 0
  t.teardown(source.onChange(() => { swaps++ }))
  const burstStart = performance.now()
  for (let i = 0; i < 1000; i++) server.put(sliceFor(user(i), [`10.201.${i >> 8}.${i & 255}`], { name: `slice-${i}`, namespace: namespaceOf(i, namespaces) }))
  await waitForSnapshot(source, (s) => originsOf(s, user(999))[0] === 'http://10.201.3.231:8080', 'the end of the burst', 30_000)
  const burstMs = performance.now() - burstStart
  let updated = 0
  for (let i = 0; i < 1000; i++) if (originsOf(source.snapshot, user(i)).length === 1) updated++
  t.equal(updated, 1000, 'every user changed in the burst has its new endpoint')
  t.equal(source.snapshot.size, USERS)

  const where = namespaces === 1 ? 'in one namespace' : `over ${namespaces} namespaces (${USERS / namespaces} each, ${namespaces} informers)`
  t.comment(`sync of ${USERS} users ${where} (${USERS} slices, ${USERS * 2} endpoints) over HTTP: ${syncMs.toFixed(0)} ms`)
  t.comment(`heap: ${before.toFixed(1)} MiB before, ${after.toFixed(1)} MiB after sync (${after >= before ? '+' : ''}${(after - before).toFixed(1)} MiB incl. the informer caches)`)
  t.comment(`one slice change to a new snapshot, median of 20: ${eventMs.toFixed(1)} ms (coalescing window 5 ms)`)
  t.comment(`1000 slice changes: ${burstMs.toFixed(0)} ms, ${swaps} snapshot swaps`)
}

void t.test(`${USERS} users in one namespace: sync, heap, one event, a burst`, (t) => syncAndChange(t, 1))

void t.test(`${USERS} users over 20 namespaces: sync, heap, one event, a burst`, (t) => syncAndChange(t, 20))

void t.test(`${USERS} users: cost of one change to the snapshot`, (t) => {
  const index = new EndpointIndex()
  for (let i = 0; i < USERS; i++) {
    const slice = sliceFor(user(i), addresses(i), { name: `slice-${i}` }) as EndpointSliceLike
    index.upsert({ ...slice, metadata: { ...slice.metadata, resourceVersion: String(i) } })
  }
  let snapshot: EndpointSnapshot = index.apply(new Map())
  t.equal(snapshot.size, USERS)
  const rounds = 500
  let applyMs = 0
  let diffMs = 0
  for (let round = 0; round < rounds; round++) {
    const i = (round * 7919) % USERS
    const slice = sliceFor(user(i), [`10.250.${round >> 8}.${round & 255}`], { name: `slice-${i}` }) as EndpointSliceLike
    index.upsert({ ...slice, metadata: { ...slice.metadata, resourceVersion: `r${round}` } })
    const a = performance.now()
    const next = index.apply(snapshot)
    const b = performance.now()
    const changed = changedUsers(snapshot, next)
    const c = performance.now()
    applyMs += b - a
    diffMs += c - b
    if (changed.size !== 1) t.fail(`round ${round}: ${changed.size} users changed`)
    snapshot = next
  }
  t.equal(snapshot.size, USERS)
  t.comment(`per change at ${USERS} users: copy-on-write apply ${(applyMs / rounds * 1000).toFixed(0)} µs, SnapshotPublisher's changedUsers diff ${(diffMs / rounds * 1000).toFixed(0)} µs`)
  t.end()
})
