// The chart's identity values: nothing renders while off; on, it needs an existing Secret (a
// clear `fail` without one), mounts only the listed keys read-only, and the rendered environment
// is what podgate starts with; users' pods may reach the admin port, and only it, for the JWKS,
// whose in-cluster URL NOTES.txt prints.
import t from 'tap'
import { loadConfig } from '../../src/config.ts'
import { MANAGED_BY, MANAGED_BY_LABEL } from '../../src/kube/labels.ts'
import { FULLNAME, Helm, installHelm, NAMESPACE, only, podgateContainer, renderedSecrets, resolveEnv, type Deployment, type Manifest } from './chart.ts'
import { identityKeyPem } from '../support/identity.ts'

let helm: Helm

t.before(async () => {
  helm = await Helm.create(t, await installHelm(t))
})

const ON = { identity: { enabled: true, existingSecret: 'podgate-identity' } }

interface SecretVolume { name: string, secret?: { secretName: string, defaultMode?: number, items?: { key: string, path: string }[] } }
interface PolicyRule { ports: { port: string | number, protocol: string }[], from?: Record<string, unknown>[] }

function identityEnv (manifests: readonly Manifest[]): Record<string, string> {
  const env = resolveEnv(podgateContainer(only<Deployment>(manifests, 'Deployment')), renderedSecrets(manifests))
  return Object.fromEntries(Object.entries(env).filter(([name]) => name.startsWith('PODGATE_IDENTITY_')))
}

function identityVolume (manifests: readonly Manifest[]): SecretVolume | undefined {
  const volumes: SecretVolume[] | undefined = only<Deployment>(manifests, 'Deployment').spec.template.spec.volumes
  return volumes?.find((v) => v.name === 'identity')
}

function adminRules (manifests: readonly Manifest[]): PolicyRule[] {
  const policy = only<{ spec: { ingress: PolicyRule[] } }>(manifests, 'NetworkPolicy')
  return policy.spec.ingress.filter((rule) => rule.ports.some((p) => p.port === 'admin'))
}

void t.test('off by default: no variable, no volume, no extra way to the admin port', async (t) => {
  const manifests = await helm.render({})
  t.same(identityEnv(manifests), {})
  t.equal(identityVolume(manifests), undefined)
  t.equal(adminRules(manifests).length, 1, 'the monitoring rule only')
  t.notMatch(await helm.notes({}), 'jwks')
})

void t.test('on without a Secret: rendering fails and says what to create', async (t) => {
  const rendered = await helm.template({ identity: { enabled: true } })
  t.not(rendered.code, 0)
  t.match(rendered.stderr, 'identity.enabled needs identity.existingSecret')
  t.match(rendered.stderr, 'openssl genpkey -algorithm ed25519')
})

void t.test('on: the listed keys mounted read-only, and podgate starts from the rendered environment', async (t) => {
  const values = { identity: { ...ON.identity, key: 'current.pem', publishedKeys: ['previous.pub', 'current.pem'], header: 'X-Pod-Identity', ttl: '1m', binding: 'user' } }
  const lint = await helm.lint(values)
  t.equal(lint.code, 0, lint.stdout + lint.stderr)
  const manifests = await helm.render(values)
  const container = podgateContainer(only<Deployment>(manifests, 'Deployment'))
  const mount = container.volumeMounts?.find((m) => m.name === 'identity')
  t.same(mount, { name: 'identity', mountPath: '/etc/podgate-identity', readOnly: true })
  const volume = identityVolume(manifests)
  t.equal(volume?.secret?.secretName, 'podgate-identity')
  t.equal(volume?.secret?.defaultMode, 0o440, 'owner and the pod\'s fsGroup may read it, nobody may write')
  t.same(volume?.secret?.items, [{ key: 'current.pem', path: 'current.pem' }, { key: 'previous.pub', path: 'previous.pub' }], 'only the listed keys, each once')

  const env = identityEnv(manifests)
  t.same(env, {
    PODGATE_IDENTITY_KEY: '/etc/podgate-identity/current.pem',
    PODGATE_IDENTITY_PUBLISHED_KEYS: '/etc/podgate-identity/previous.pub,/etc/podgate-identity/current.pem',
    PODGATE_IDENTITY_HEADER: 'X-Pod-Identity',
    PODGATE_IDENTITY_TTL: '1m',
    PODGATE_IDENTITY_BINDING: 'user',
  })
  // The Secret's keys as the kubelet would project them, in this test's own directory.
  const dir = t.testdir({ 'current.pem': identityKeyPem('EdDSA').privatePem, 'previous.pub': identityKeyPem('ES256').publicPem })
  const local = Object.fromEntries(Object.entries(env).map(([name, value]) => [name, value.replaceAll(mount?.mountPath ?? '', dir)]))
  const all = resolveEnv(container, renderedSecrets(manifests))
  const identity = loadConfig({ ...all, ...local }).gateway.identity
  t.match(identity, { header: 'x-pod-identity', ttlS: 60, binding: 'user' })
  t.same(identity?.published.map((k) => k.alg), ['EdDSA', 'ES256'])
})

void t.test('users\' pods may reach the admin port for the JWKS: from the served namespaces, that port only', async (t) => {
  const userPods = { podSelector: { matchLabels: { [MANAGED_BY_LABEL]: MANAGED_BY } } }
  const rule = (manifests: readonly Manifest[]): PolicyRule | undefined => adminRules(manifests).find((r) => JSON.stringify(r.from).includes(MANAGED_BY_LABEL))
  const inNamespaces = (names: string[]) => ({ ...userPods, namespaceSelector: { matchExpressions: [{ key: 'kubernetes.io/metadata.name', operator: 'In', values: names }] } })

  const own = rule(await helm.render(ON))
  t.same(own?.ports, [{ port: 'admin', protocol: 'TCP' }])
  t.same(own?.from, [inNamespaces([NAMESPACE])], 'the release namespace by default')
  t.same(rule(await helm.render({ ...ON, config: { namespaces: ['team-a', 'team-b'] } }))?.from, [inNamespaces(['team-a', 'team-b'])])
  t.same(rule(await helm.render({ ...ON, config: { namespaces: ['*'], clusterScope: true } }))?.from, [{ ...userPods, namespaceSelector: {} }], 'every namespace for "*"')
  t.same((await helm.render({ ...ON, networkPolicy: { enabled: false } })).filter((m) => m.kind === 'NetworkPolicy'), [], 'no policy, nothing to open')
})

void t.test('NOTES.txt gives the in-cluster JWKS URL: the Service\'s admin port', async (t) => {
  const manifests = await helm.render(ON)
  const service = only<{ spec: { ports: { name: string, port: number }[] } }>(manifests, 'Service')
  const port = service.spec.ports.find((p) => p.name === 'admin')?.port
  const notes = await helm.notes({ ...ON, identity: { ...ON.identity, header: 'X-Pod-Identity' } })
  t.match(notes, `It also gets X-Pod-Identity, a token podgate signs, to verify with the keys at\n   http://${FULLNAME}.${NAMESPACE}.svc:${port}/.well-known/jwks.json`)
  t.equal(service.metadata.name, FULLNAME)
})

void t.test('values podgate would refuse are refused by the schema', async (t) => {
  for (const identity of [{ binding: 'path' }, { ttl: 'soon' }, { header: 'X Identity' }, { publishedKeys: ['a.pem', 'a.pem'] }, { key: '../etc/passwd' }, { extra: true }]) {
    const rendered = await helm.template({ identity: { ...ON.identity, ...identity } })
    t.not(rendered.code, 0, JSON.stringify(identity))
    t.match(rendered.stderr, '/identity', JSON.stringify(identity))
  }
})
