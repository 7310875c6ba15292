// Per-user revocation: a mark refuses the user's tokens issued before it (cached ones too, and
// those without iat) while newer tokens and other users keep working; marks written to a
// UserWorkload reach a second replica's gateway through its informer.
import { SignJWT } from 'jose'
import t from 'tap'
import { mintToken } from '../../src/auth/mint.ts'
import { followRevocations, RevocationMarks } from '../../src/auth/revocations.ts'
import { systemClock } from '../../src/clock.ts'
import { startKubernetesProvisioner } from '../../src/controller/provisioner.ts'
import { parseProfiles } from '../../src/controller/profiles.ts'
import { createLogger } from '../../src/log.ts'
import { Metrics } from '../../src/metrics.ts'
import { FakeKubeServer } from '../support/fake-kube.ts'
import { startTestGateway, type TestGateway } from '../support/gateway.ts'
import { kubeConfigFor } from '../support/kubeconfig.ts'

/** A token for `user` issued `ageS` seconds ago (negative: in the future). */
function tokenIssued (gw: TestGateway, user: string, ageS: number): Promise<string> {
  const clock = { ...systemClock, now: () => Date.now() - ageS * 1000 }
  return mintToken({ secret: new TextEncoder().encode(gw.secret), user, ttlSeconds: 600, clock })
}

async function statusOf (gw: TestGateway, token: string): Promise<{ status: number, body: string }> {
  const res = await fetch(gw.url, { headers: { authorization: `Bearer ${token}` }, signal: AbortSignal.timeout(5_000) })
  return { status: res.status, body: await res.text() }
}

void t.test('a mark refuses older and iat-less tokens of that user, cached ones included; newer tokens and other users pass', async (t) => {
  const marks = new RevocationMarks()
  const gw = await startTestGateway(t, {}, { revocations: marks })
  const old = await tokenIssued(gw, 'alice', 60)
  const bobs = await tokenIssued(gw, 'bob', 60)
  const noIat = await new SignJWT({ sub: 'alice' }).setProtectedHeader({ alg: 'HS256' }).setExpirationTime(Math.floor(Date.now() / 1000) + 600).sign(new TextEncoder().encode(gw.secret))
  // Authenticated (no workload here, so 404): the token is in the verified-token cache now.
  t.equal((await statusOf(gw, old)).status, 404)
  t.equal((await statusOf(gw, noIat)).status, 404, 'without a mark, a token without iat is fine')

  marks.set('alice', Math.floor(Date.now() / 1000) - 5)
  const refused = await statusOf(gw, old)
  t.equal(refused.status, 401, 'the cached token is refused at once')
  t.match(refused.body, /"error":"PODGATE_AUTH".*were revoked/)
  t.match((await statusOf(gw, noIat)).body, /has no \\"iat\\" claim/, 'a token without iat is refused for a revoked user')
  t.equal((await statusOf(gw, await tokenIssued(gw, 'alice', 0))).status, 404, 'a token issued after the mark works')
  t.equal((await statusOf(gw, bobs)).status, 404, 'another user is untouched')

  marks.set('alice', Math.floor(Date.now() / 1000) - 3600)
  t.equal((await statusOf(gw, old)).status, 401, 'an earlier mark never re-admits a revoked token')
  const metrics = await (await fetch(`${gw.adminUrl}/metrics`)).text()
  t.match(metrics, /podgate_auth_failures_total\{reason="revoked"\} [1-9]/)
})

void t.test('a revoke written on one replica refuses a cached token on another within 2 s', async (t) => {
  const server = await FakeKubeServer.start({ bookmarkIntervalMs: 100 })
  t.teardown(() => server.stop())
  const replica = (identity: string): ReturnType<typeof startKubernetesProvisioner> => {
    const provisioner = startKubernetesProvisioner({
      config: { profilesFile: undefined },
      kubeConfig: kubeConfigFor(server),
      namespace: 'default',
      logger: createLogger('silent'),
      metrics: new Metrics({ defaultMetrics: false }),
      identity,
      profiles: parseProfiles('web:\n  image: app:1\n'),
      informerBackoff: { initialMs: 20, maxMs: 200 },
    })
    t.teardown(() => provisioner.close())
    return provisioner
  }
  const a = replica('replica-a')
  const b = replica('replica-b')
  const marksOfB = new RevocationMarks()
  followRevocations(b.workloads, marksOfB)
  await Promise.all([a.cache.synced, b.cache.synced])
  const gw = await startTestGateway(t, {}, { revocations: marksOfB })
  await a.workloads.put('alice', {})
  const old = await tokenIssued(gw, 'alice', 60)
  t.equal((await statusOf(gw, old)).status, 404, 'authenticated and cached on replica b')

  const started = performance.now()
  const revoked = await a.workloads.revoke('alice', new Date())
  t.match(revoked.tokensNotBefore, /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$/)
  let status = 0
  while (performance.now() - started < 2_000) {
    status = (await statusOf(gw, old)).status
    if (status === 401) break
    await new Promise((resolve) => setTimeout(resolve, 20))
  }
  t.equal(status, 401, 'refused on replica b')
  t.comment(`revoke on replica a → refused on replica b: ${(performance.now() - started).toFixed(0)} ms`)
  t.equal((await statusOf(gw, await tokenIssued(gw, 'alice', -1))).status, 404, 'a new token works')
  await t.rejects(a.workloads.revoke('nobody', new Date()), { status: 404, message: /the revocation mark lives on the UserWorkload/ })
})
