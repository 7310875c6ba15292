// helm lint and helm template over the value sets users start from, with assertions on what
// the rendered manifests grant and how they run podgate.
import t from 'tap'
import { parse } from 'yaml'
import { readFile } from 'node:fs/promises'
import {
  DEFAULT_CLIENT_HEADERS_TIMEOUT_MS, DEFAULT_KEEP_ALIVE_TIMEOUT_MS, DEFAULT_MAX_REQUEST_HEADERS, loadConfig, parseDuration, type Config,
} from '../../src/config.ts'
import { ConfigError } from '../../src/errors.ts'
import {
  all, envVar, EXISTING_SECRET, FULLNAME, grants, Helm, installHelm, NAMESPACE, only, podgateContainer, POD_NAME, renderedSecrets, REPO_DIR,
  resolveEnv, type Deployment, type PolicyRule,
} from './chart.ts'

const VALUE_SETS: Record<string, unknown> = {
  defaults: {},
  existingSecret: { existingSecret: EXISTING_SECRET },
  ingress: {
    ingress: {
      enabled: true,
      className: 'nginx',
      annotations: { 'nginx.ingress.kubernetes.io/proxy-buffering': 'off' },
      hosts: [{ host: 'apps.example.com', paths: [{ path: '/', pathType: 'Prefix' }] }],
      tls: [{ secretName: 'apps-tls', hosts: ['apps.example.com'] }],
    },
  },
  jwks: {
    auth: {
      jwksUrl: 'https://idp.example.com/realms/main/protocol/openid-connect/certs',
      issuer: ['https://idp.example.com/realms/main'],
      audience: ['podgate'],
      userClaim: 'preferred_username',
    },
  },
  autoscalingAndMonitoring: {
    autoscaling: { enabled: true, minReplicas: 3, maxReplicas: 12, targetMemoryUtilizationPercentage: 80 },
    serviceMonitor: { enabled: true, labels: { release: 'kube-prometheus-stack' } },
  },
}

// Exactly what podgate uses (issue: chart RBAC), as "group/resource verb" pairs.
const EXPECTED_GRANTS = new Set([
  ...['list', 'watch'].map((v) => `discovery.k8s.io/endpointslices ${v}`),
  ...['apps/deployments', '/services', '/persistentvolumeclaims', 'networking.k8s.io/networkpolicies'].flatMap((r) =>
    ['create', 'get', 'list', 'watch', 'patch', 'delete'].map((v) => `${r} ${v}`)),
  ...['create', 'get', 'list', 'watch', 'patch', 'update', 'delete'].map((v) => `podgate.dev/userworkloads ${v}`),
  ...['get', 'patch', 'update'].map((v) => `podgate.dev/userworkloads/status ${v}`),
  ...['/pods', '/events'].flatMap((r) => ['get', 'list', 'watch'].map((v) => `${r} ${v}`)),
  ...['get', 'create', 'update'].map((v) => `coordination.k8s.io/leases ${v}`),
])

const SECURITY_CONTEXT = {
  runAsNonRoot: true,
  readOnlyRootFilesystem: true,
  allowPrivilegeEscalation: false,
  capabilities: { drop: ['ALL'] },
  seccompProfile: { type: 'RuntimeDefault' },
}

const CLUSTER_SCOPED = new Set(['ClusterRole', 'ClusterRoleBinding', 'CustomResourceDefinition', 'Namespace'])

let helm: Helm
let configVariables: Set<string>

t.before(async () => {
  helm = await Helm.create(t, await installHelm(t))
  // loadConfig and the modules it reads variables with.
  const files = ['src/config.ts', 'src/auth/credential-config.ts', 'src/auth/oidc-config.ts', 'src/gateway/rate-limit-config.ts', 'src/auth/identity-config.ts', 'src/tracing/config.ts']
  const sources = await Promise.all(files.map((file) => readFile(`${REPO_DIR}/${file}`, 'utf8')))
  configVariables = new Set(sources.join('\n').match(/PODGATE_[A-Z0-9_]+/g))
})

for (const [name, values] of Object.entries(VALUE_SETS)) {
  void t.test(`value set: ${name}`, async (t) => {
    const lint = await helm.lint(values)
    t.equal(lint.code, 0, `helm lint --strict passes:\n${lint.stdout}${lint.stderr}`)

    const manifests = await helm.render(values)
    const deployment = only<Deployment>(manifests, 'Deployment')
    const container = podgateContainer(deployment)
    const pod = deployment.spec.template.spec

    void t.test('RBAC is exactly what podgate uses, in its own namespace', (t) => {
      t.same(all(manifests, 'ClusterRole'), [], 'no ClusterRole')
      t.same(all(manifests, 'ClusterRoleBinding'), [], 'no ClusterRoleBinding')
      const role = only<{ rules: PolicyRule[] }>(manifests, 'Role')
      t.same(grants(role.rules), [...EXPECTED_GRANTS].sort())
      t.equal(new Set(grants(role.rules)).size, grants(role.rules).length, 'no grant listed twice')
      const binding = only<{ roleRef: { kind: string, name: string }, subjects: { kind: string, name: string, namespace: string }[] }>(manifests, 'RoleBinding')
      t.same(binding.roleRef, { apiGroup: 'rbac.authorization.k8s.io', kind: 'Role', name: role.metadata.name })
      const account = only(manifests, 'ServiceAccount')
      t.same(binding.subjects, [{ kind: 'ServiceAccount', name: account.metadata.name, namespace: NAMESPACE }])
      t.equal(pod.serviceAccountName, account.metadata.name, 'the pod runs as the bound ServiceAccount')
      t.end()
    })

    void t.test('every namespaced object lands in the release namespace', (t) => {
      for (const manifest of manifests.filter((m) => !CLUSTER_SCOPED.has(m.kind))) {
        t.equal(manifest.metadata.namespace, NAMESPACE, `${manifest.kind}/${manifest.metadata.name}`)
      }
      t.end()
    })

    void t.test('probes hit /healthz and /readyz on the admin port', (t) => {
      const admin = container.ports?.find((p) => p.name === 'admin')
      t.equal(admin?.containerPort, 9090)
      t.same(container.livenessProbe?.httpGet, { path: '/healthz', port: 'admin' })
      t.same(container.readinessProbe?.httpGet, { path: '/readyz', port: 'admin' })
      t.equal(envVar(container, 'PODGATE_ADMIN_PORT')?.value, String(admin?.containerPort), 'podgate listens where the probes look')
      t.equal(envVar(container, 'PODGATE_PORT')?.value, String(container.ports?.find((p) => p.name === 'http')?.containerPort))
      t.end()
    })

    void t.test('the container is locked down', (t) => {
      t.same(container.securityContext, SECURITY_CONTEXT)
      t.strictSame(container.securityContext, SECURITY_CONTEXT, 'nothing more, nothing less')
      t.equal(pod.securityContext?.runAsNonRoot, true)
      t.same(pod.securityContext?.seccompProfile, { type: 'RuntimeDefault' })
      t.equal(pod.securityContext?.runAsUser, 10001, 'the image\'s numeric uid')
      t.same(container.args, ['serve'])
      t.end()
    })

    void t.test('terminationGracePeriodSeconds outlasts the drain', (t) => {
      const drainMs = parseDuration(envVar(container, 'PODGATE_DRAIN_TIMEOUT')?.value ?? '')
      t.ok(drainMs !== undefined && drainMs > 0, 'PODGATE_DRAIN_TIMEOUT is a duration')
      t.ok((pod.terminationGracePeriodSeconds ?? 30) * 1000 > (drainMs ?? Infinity),
        `grace ${pod.terminationGracePeriodSeconds}s > drain ${drainMs}ms`)
      t.end()
    })

    void t.test('replicas spread across nodes and a PodDisruptionBudget keeps them serving', (t) => {
      const podLabels = deployment.spec.template.metadata.labels
      const spread = pod.topologySpreadConstraints ?? []
      t.equal(spread.length, 1)
      t.equal(spread[0]?.topologyKey, 'kubernetes.io/hostname')
      t.same(spread[0]?.labelSelector.matchLabels, deployment.spec.selector.matchLabels)
      const pdb = only<{ spec: { maxUnavailable: number, selector: { matchLabels: Record<string, string> } } }>(manifests, 'PodDisruptionBudget')
      t.equal(pdb.apiVersion, 'policy/v1')
      t.equal(pdb.spec.maxUnavailable, 1)
      for (const [key, value] of Object.entries(pdb.spec.selector.matchLabels)) t.equal(podLabels[key], value, `PDB selects the pods by ${key}`)
      t.end()
    })

    void t.test('only variables podgate reads are set, and podgate accepts them', (t) => {
      const names = (container.env ?? []).map((e) => e.name)
      t.same(names.filter((n) => !configVariables.has(n)), [], 'every PODGATE_* name is read by loadConfig')
      t.equal(pod.enableServiceLinks, false, 'no injected variables (a Service named podgate would inject PODGATE_PORT=tcp://…)')
      t.equal(new Set(names).size, names.length, 'no variable set twice')
      const env = resolveEnv(container, renderedSecrets(manifests))
      const config = loadConfig(env)
      t.equal(config.namespace, NAMESPACE)
      t.equal(config.gateway.trustProxy, true, 'behind an Ingress by default')
      t.equal(config.gateway.port, 8080)
      t.equal(config.gateway.adminPort, 9090)
      t.equal(config.profilesFile, '/etc/podgate/profiles.yaml')
      t.ok(config.adminToken !== undefined && config.adminToken.length >= 16, 'an admin token is always configured')
      t.equal(config.podName, POD_NAME, 'the Lease names this replica by its pod name')
      t.same(config.gatewayPodSelector, deployment.spec.selector.matchLabels, 'user NetworkPolicies admit exactly the labels the chart selects its own pods by')
      const namespaceVar = envVar(container, 'PODGATE_NAMESPACE')
      t.same(namespaceVar?.valueFrom, { fieldRef: { fieldPath: 'metadata.namespace' } })
      t.end()
    })

    void t.test('profiles are a ConfigMap mounted where PODGATE_PROFILES points', async (t) => {
      const volume = pod.volumes?.find((v) => v.configMap !== undefined)
      const mount = container.volumeMounts?.find((m) => m.name === volume?.name)
      t.equal(mount?.mountPath, '/etc/podgate')
      t.equal(mount?.readOnly, true)
      const configMap = all(manifests, 'ConfigMap').find((c) => c.metadata.name === volume?.configMap?.name) as unknown as { data: Record<string, string> } | undefined
      const file = configMap?.data['profiles.yaml']
      t.type(file, 'string', 'the ConfigMap has profiles.yaml')
      const chartDefaults = parse(await readFile(`${REPO_DIR}/charts/podgate/values.yaml`, 'utf8')) as { profiles: unknown }
      t.same(parse(file ?? ''), chartDefaults.profiles)
    })

    void t.test('the Service exposes the http and admin ports by name', (t) => {
      const service = only<{ spec: { selector: Record<string, string>, ports: { name: string, port: number, targetPort: string }[] } }>(manifests, 'Service')
      t.same(service.spec.ports.map((p) => [p.name, p.port, p.targetPort]), [['http', 80, 'http'], ['admin', 9090, 'admin']])
      t.same(service.spec.selector, deployment.spec.selector.matchLabels)
      t.end()
    })

    void t.test('a NetworkPolicy admits the http port and the admin port', (t) => {
      const policy = only<{ spec: { policyTypes: string[], ingress: { ports: { port: string }[], from?: unknown[] }[] } }>(manifests, 'NetworkPolicy')
      t.same(policy.spec.policyTypes, ['Ingress'])
      t.same(policy.spec.ingress.map((rule) => rule.ports.map((p) => p.port)), [['http'], ['admin']])
      t.equal(policy.spec.ingress[0]?.from, undefined, 'user traffic from anywhere by default')
      t.same(policy.spec.ingress[1]?.from, [{ namespaceSelector: { matchLabels: { 'kubernetes.io/metadata.name': 'monitoring' } } }])
      t.end()
    })
  })
}

interface NetworkPolicyRule { ports: { port: string }[], from?: unknown[] }

/** The `from` peers of the chart's NetworkPolicy, by port name (undefined: any source). */
async function peersByPort (values: unknown): Promise<Record<string, unknown[] | undefined>> {
  const policy = only<{ spec: { ingress: NetworkPolicyRule[] } }>(await helm.render(values), 'NetworkPolicy')
  return Object.fromEntries(policy.spec.ingress.map((rule) => [rule.ports.map((p) => p.port).join(','), rule.from]))
}

const namespacePeer = (name: string): unknown => ({ namespaceSelector: { matchLabels: { 'kubernetes.io/metadata.name': name } } })

void t.test('networkPolicy.adminFrom adds peers to the admin port; the monitoring entry stays', async (t) => {
  const monitoring = namespacePeer('monitoring')
  const accounts = namespacePeer('accounts')
  const prometheus = { namespaceSelector: { matchLabels: { 'kubernetes.io/metadata.name': 'observability' } }, podSelector: { matchLabels: { 'app.kubernetes.io/name': 'prometheus' } } }

  const added = await peersByPort({ networkPolicy: { adminFrom: [accounts] } })
  t.same(added.admin, [monitoring, accounts], 'Prometheus keeps the admin port when the admin API gets a caller')
  t.equal(added.http, undefined, 'the http port is unaffected')

  const moved = await peersByPort({ networkPolicy: { adminFromMonitoring: [prometheus], adminFrom: [accounts] } })
  t.same(moved.admin, [prometheus, accounts], 'adminFromMonitoring replaces the monitoring entry, adminFrom still adds')

  const withoutMonitoring = await peersByPort({ networkPolicy: { adminFromMonitoring: [], adminFrom: [accounts] } })
  t.same(withoutMonitoring.admin, [accounts])

  const open = await peersByPort({ networkPolicy: { adminFromMonitoring: [], adminFrom: [] } })
  t.equal(open.admin, undefined, 'both empty: any source, as values.yaml says')

  const ingress = namespacePeer('ingress-nginx')
  const http = await peersByPort({ networkPolicy: { httpFrom: [ingress] } })
  t.same(http.http, [ingress], 'httpFrom is the whole list for the http port')
  t.same(http.admin, [monitoring], 'and leaves the admin port alone')
})

void t.test('extraEnv and podLabels add to what the chart sets, never replace it', async (t) => {
  const manifests = await helm.render({ extraEnv: [{ name: 'NODE_OPTIONS', value: '--max-old-space-size=256' }], podLabels: { team: 'platform' } })
  const deployment = only<Deployment>(manifests, 'Deployment')
  const container = podgateContainer(deployment)
  t.same(envVar(container, 'NODE_OPTIONS'), { name: 'NODE_OPTIONS', value: '--max-old-space-size=256' })
  const defaults = podgateContainer(only<Deployment>(await helm.render({}), 'Deployment'))
  t.same((container.env ?? []).map((e) => e.name), [...(defaults.env ?? []).map((e) => e.name), 'NODE_OPTIONS'], 'every variable of the chart is still set')
  const labels = deployment.spec.template.metadata.labels
  t.equal(labels.team, 'platform')
  for (const [key, value] of Object.entries(deployment.spec.selector.matchLabels)) t.equal(labels[key], value, `pods keep ${key}, which users' NetworkPolicies select podgate by`)
})

void t.test('defaults: the chart makes its own Secret with a generated key and admin token', async (t) => {
  const manifests = await helm.render({})
  const secret = only<{ stringData: Record<string, string> }>(manifests, 'Secret')
  t.equal(secret.metadata.name, FULLNAME)
  t.match(secret.stringData['jwt-secret'], /^[A-Za-z0-9]{48}$/)
  t.match(secret.stringData['admin-token'], /^[A-Za-z0-9]{48}$/)
  const container = podgateContainer(only<Deployment>(manifests, 'Deployment'))
  t.same(envVar(container, 'PODGATE_JWT_SECRET')?.valueFrom, { secretKeyRef: { name: FULLNAME, key: 'jwt-secret' } })
  t.same(envVar(container, 'PODGATE_ADMIN_TOKEN')?.valueFrom, { secretKeyRef: { name: FULLNAME, key: 'admin-token' } })
  t.equal(only<Deployment>(manifests, 'Deployment').spec.replicas, 2)
  for (const kind of ['Ingress', 'HorizontalPodAutoscaler', 'ServiceMonitor']) t.same(all(manifests, kind), [], `no ${kind} unless asked`)
})

void t.test('given secrets go into the chart\'s Secret as they are', async (t) => {
  const manifests = await helm.render({ auth: { jwtSecret: 's'.repeat(32) }, adminToken: 'admin-token-0123456789' })
  const secret = only<{ stringData: Record<string, string> }>(manifests, 'Secret')
  t.same(secret.stringData, { 'jwt-secret': 's'.repeat(32), 'admin-token': 'admin-token-0123456789' })
})

void t.test('existingSecret: no Secret is rendered and the keys come from the named one', async (t) => {
  const manifests = await helm.render(VALUE_SETS.existingSecret)
  t.same(all(manifests, 'Secret'), [])
  const container = podgateContainer(only<Deployment>(manifests, 'Deployment'))
  t.same(envVar(container, 'PODGATE_JWT_SECRET')?.valueFrom, { secretKeyRef: { name: 'podgate-keys', key: 'hmac' } })
  t.same(envVar(container, 'PODGATE_ADMIN_TOKEN')?.valueFrom, { secretKeyRef: { name: 'podgate-keys', key: 'admin' } })
})

void t.test('JWKS: the URL is a plain value and no shared secret exists anywhere', async (t) => {
  const manifests = await helm.render(VALUE_SETS.jwks)
  const container = podgateContainer(only<Deployment>(manifests, 'Deployment'))
  t.same(envVar(container, 'PODGATE_JWKS_URL'), { name: 'PODGATE_JWKS_URL', value: 'https://idp.example.com/realms/main/protocol/openid-connect/certs' })
  t.equal(envVar(container, 'PODGATE_JWT_SECRET'), undefined)
  t.equal(envVar(container, 'PODGATE_JWT_ISSUER')?.value, 'https://idp.example.com/realms/main')
  t.equal(envVar(container, 'PODGATE_USER_CLAIM')?.value, 'preferred_username')
  const secret = only<{ stringData: Record<string, string> }>(manifests, 'Secret')
  t.same(Object.keys(secret.stringData), ['admin-token'], 'only the admin token is secret')
})

void t.test('ingress on: the Ingress sends every path to the podgate Service http port', async (t) => {
  const manifests = await helm.render(VALUE_SETS.ingress)
  const ingress = only<{ spec: { ingressClassName: string, tls: unknown, rules: { host: string, http: { paths: { path: string, pathType: string, backend: unknown }[] } }[] } }>(manifests, 'Ingress')
  t.equal(ingress.apiVersion, 'networking.k8s.io/v1')
  t.equal(ingress.spec.ingressClassName, 'nginx')
  t.same(ingress.spec.tls, [{ secretName: 'apps-tls', hosts: ['apps.example.com'] }])
  t.same(ingress.metadata.annotations, { 'nginx.ingress.kubernetes.io/proxy-buffering': 'off' })
  t.same(ingress.spec.rules, [{
    host: 'apps.example.com',
    http: { paths: [{ path: '/', pathType: 'Prefix', backend: { service: { name: FULLNAME, port: { name: 'http' } } } }] },
  }])
  const anyHost = only<{ spec: { rules: unknown[] } }>(await helm.render({ ingress: { enabled: true, hosts: [{ paths: [{ path: '/', pathType: 'Prefix' }] }] } }), 'Ingress')
  t.same(anyHost.spec.rules, [{ http: { paths: [{ path: '/', pathType: 'Prefix', backend: { service: { name: FULLNAME, port: { name: 'http' } } } }] } }], 'a rule without host matches every host')
})

void t.test('autoscaling and monitoring on: HPA v2 drives the Deployment, ServiceMonitor scrapes the admin port', async (t) => {
  const manifests = await helm.render(VALUE_SETS.autoscalingAndMonitoring)
  const deployment = only<Deployment>(manifests, 'Deployment')
  t.equal(deployment.spec.replicas, undefined, 'the HPA owns the replica count')
  const hpa = only<{ spec: { scaleTargetRef: unknown, minReplicas: number, maxReplicas: number, metrics: { resource: { name: string, target: unknown } }[] } }>(manifests, 'HorizontalPodAutoscaler')
  t.equal(hpa.apiVersion, 'autoscaling/v2')
  t.same(hpa.spec.scaleTargetRef, { apiVersion: 'apps/v1', kind: 'Deployment', name: deployment.metadata.name })
  t.same([hpa.spec.minReplicas, hpa.spec.maxReplicas], [3, 12])
  t.same(hpa.spec.metrics.map((m) => [m.resource.name, m.resource.target]), [
    ['cpu', { type: 'Utilization', averageUtilization: 70 }],
    ['memory', { type: 'Utilization', averageUtilization: 80 }],
  ])
  const monitor = only<{ spec: { selector: { matchLabels: Record<string, string> }, endpoints: { port: string, path: string }[] } }>(manifests, 'ServiceMonitor')
  t.equal(monitor.apiVersion, 'monitoring.coreos.com/v1')
  t.equal(monitor.metadata.labels?.release, 'kube-prometheus-stack')
  t.match(monitor.spec.endpoints, [{ port: 'admin', path: '/metrics' }])
  const service = only(manifests, 'Service')
  for (const [key, value] of Object.entries(monitor.spec.selector.matchLabels)) t.equal(service.metadata.labels?.[key], value, `selects the Service by ${key}`)
})

void t.test('an explicit grace period is kept; the derived one follows the drain time', async (t) => {
  const explicit = only<Deployment>(await helm.render({ terminationGracePeriodSeconds: 45 }), 'Deployment')
  t.equal(explicit.spec.template.spec.terminationGracePeriodSeconds, 45)
  const derived = only<Deployment>(await helm.render({ config: { drainTimeoutSeconds: 50 } }), 'Deployment')
  t.equal(derived.spec.template.spec.terminationGracePeriodSeconds, 60)
  t.equal(envVar(podgateContainer(derived), 'PODGATE_DRAIN_TIMEOUT')?.value, '50s')
})

// ---- Client limits (PODGATE_CLIENT_HEADERS_TIMEOUT … PODGATE_JWT_MAX_AGE) ----

/** Renders `values` and returns the podgate container's environment as the kubelet would set it. */
async function renderedEnv (values: unknown): Promise<Record<string, string>> {
  const manifests = await helm.render(values)
  return resolveEnv(podgateContainer(only<Deployment>(manifests, 'Deployment')), renderedSecrets(manifests))
}

const CLIENT_LIMIT_VARIABLES = [
  'PODGATE_CLIENT_HEADERS_TIMEOUT', 'PODGATE_KEEP_ALIVE_TIMEOUT', 'PODGATE_CLIENT_IDLE_TIMEOUT',
  'PODGATE_MAX_CONNECTIONS', 'PODGATE_MAX_REQUEST_HEADERS', 'PODGATE_UPSTREAM_CONNECTIONS', 'PODGATE_JWT_MAX_AGE',
]

/** The settings these values control, as podgate reads them. */
function clientLimits (config: Config): Record<string, number | undefined> {
  const { clientHeadersTimeoutMs, keepAliveTimeoutMs, clientIdleTimeoutMs, maxConnections, maxRequestHeaders, upstreamConnections } = config.gateway
  return { clientHeadersTimeoutMs, keepAliveTimeoutMs, clientIdleTimeoutMs, maxConnections, maxRequestHeaders, upstreamConnections, maxAgeS: config.auth.maxAgeS }
}

void t.test('client limits: the default chart gives podgate its own defaults, and podgate starts with them', async (t) => {
  const env = await renderedEnv({})
  t.equal(env.PODGATE_CLIENT_IDLE_TIMEOUT, undefined, 'an empty config.clientIdleTimeout renders no variable: podgate derives it')
  t.equal(env.PODGATE_JWT_MAX_AGE, undefined, 'an empty auth.maxAge renders no variable: no cap')
  const config = loadConfig(env)
  // podgate given only a key and the same upstream timeouts, i.e. podgate's own defaults for the rest.
  const own = loadConfig({
    PODGATE_JWT_SECRET: 'k'.repeat(32),
    PODGATE_HEADERS_TIMEOUT: env.PODGATE_HEADERS_TIMEOUT,
    PODGATE_BODY_TIMEOUT: env.PODGATE_BODY_TIMEOUT,
    PODGATE_START_TIMEOUT: env.PODGATE_START_TIMEOUT,
  })
  t.same(clientLimits(config), clientLimits(own), 'every client limit the chart renders is podgate\'s default')
  t.equal(config.gateway.clientHeadersTimeoutMs, DEFAULT_CLIENT_HEADERS_TIMEOUT_MS)
  t.equal(config.gateway.keepAliveTimeoutMs, DEFAULT_KEEP_ALIVE_TIMEOUT_MS)
  t.equal(config.gateway.maxConnections, 0, 'no connection limit')
  t.equal(config.gateway.maxRequestHeaders, DEFAULT_MAX_REQUEST_HEADERS)
  t.equal(config.auth.maxAgeS, undefined, 'no token age cap')
  const { headersTimeoutMs, bodyTimeoutMs, startTimeoutMs } = config.gateway
  t.equal(config.gateway.clientIdleTimeoutMs, Math.max(headersTimeoutMs, bodyTimeoutMs, startTimeoutMs) + 30_000, 'the longest upstream wait plus 30 s')
  const stated = /\((\w+) with this chart's values\)/.exec(await readFile(`${REPO_DIR}/charts/podgate/values.yaml`, 'utf8'))?.[1] ?? ''
  t.equal(parseDuration(stated), config.gateway.clientIdleTimeoutMs, `values.yaml states the derived idle timeout (${stated})`)
})

void t.test('auth.tenantClaim renders PODGATE_TENANT_CLAIM only when set, and podgate reads it', async (t) => {
  const defaults = await renderedEnv({})
  t.equal(defaults.PODGATE_TENANT_CLAIM, undefined, 'empty by default: no variable, no tenant check')
  t.equal(loadConfig(defaults).auth.tenantClaim, undefined)
  const values = { auth: { tenantClaim: 'tenant' } }
  const lint = await helm.lint(values)
  t.equal(lint.code, 0, `helm lint --strict passes:\n${lint.stdout}${lint.stderr}`)
  const env = await renderedEnv(values)
  t.equal(env.PODGATE_TENANT_CLAIM, 'tenant')
  t.equal(loadConfig(env).auth.tenantClaim, 'tenant')
  const refused = await helm.template({ auth: { tenantClaim: 'a claim' } })
  t.not(refused.code, 0, 'a claim name podgate would refuse is refused by the schema')
  t.match(refused.stderr, /tenantClaim/)
})

void t.test('auth.authUrl and auth.forwardCredentials render only when set, and podgate reads them', async (t) => {
  const defaults = await renderedEnv({})
  t.same(Object.keys(defaults).filter((name) => name.startsWith('PODGATE_AUTH_URL') || name === 'PODGATE_FORWARD_CREDENTIALS'), [], 'nothing by default')
  t.equal(loadConfig(defaults).auth.authUrl, undefined)
  const values = { auth: { forwardCredentials: true, authUrl: { url: 'http://django.users.svc:8000/whoami', userHeader: 'X-Target-Service', userPrefix: 'user-', ttl: '30s' } } }
  const lint = await helm.lint(values)
  t.equal(lint.code, 0, `helm lint --strict passes:\n${lint.stdout}${lint.stderr}`)
  const env = await renderedEnv(values)
  const config = loadConfig(env)
  t.equal(config.auth.authUrl?.url.href, 'http://django.users.svc:8000/whoami')
  t.match(config.auth.authUrl, { mode: 'fallback', userHeader: 'x-target-service', userPrefix: 'user-', ttlMs: 30_000, negativeTtlMs: 5_000, timeoutMs: 5_000 })
  t.equal(config.auth.forwardCredentials, true)
  const refused = await helm.template({ auth: { authUrl: { url: 'ftp://somewhere' } } })
  t.not(refused.code, 0, 'a URL podgate would refuse is refused by the schema')
  t.match(refused.stderr, /authUrl/)
})

void t.test('auth.signIn renders PODGATE_SIGNIN_URL only when set; config.browserGrace is PODGATE_BROWSER_GRACE; podgate reads both', async (t) => {
  const defaults = await renderedEnv({})
  t.same(Object.keys(defaults).filter((name) => name.startsWith('PODGATE_SIGNIN_')), [], 'no sign-in variable by default')
  t.equal(defaults.PODGATE_BROWSER_GRACE, '2s')
  const plain = loadConfig(defaults)
  t.equal(plain.gateway.signIn, undefined)
  t.equal(plain.gateway.browserGraceMs, 2_000, 'podgate\'s own default')
  const values = { config: { browserGrace: '5s' }, auth: { signIn: { url: 'https://accounts.example.com/login?app=notebooks', redirectParam: 'next' } } }
  const lint = await helm.lint(values)
  t.equal(lint.code, 0, `helm lint --strict passes:\n${lint.stdout}${lint.stderr}`)
  const config = loadConfig(await renderedEnv(values))
  t.equal(config.gateway.signIn?.url.href, 'https://accounts.example.com/login?app=notebooks')
  t.equal(config.gateway.signIn?.redirectParam, 'next')
  t.equal(config.gateway.browserGraceMs, 5_000)
  for (const [bad, field] of [[{ auth: { signIn: { url: '/login' } } }, 'url'], [{ auth: { signIn: { url: 'https://a.example/', redirectParam: 'r&d' } } }, 'redirectParam'], [{ config: { browserGrace: 'soon' } }, 'browserGrace']] as const) {
    const refused = await helm.template(bad)
    t.not(refused.code, 0, `${JSON.stringify(bad)}: refused by the schema, as podgate would refuse it`)
    t.match(refused.stderr, field)
  }
})

void t.test('per-user limits: off by default; rateLimit, rateBurst and maxConcurrentPerUser render only when set, and podgate reads them', async (t) => {
  const defaults = await renderedEnv({})
  t.same(Object.keys(defaults).filter((name) => name.startsWith('PODGATE_RATE_') || name === 'PODGATE_MAX_CONCURRENT_PER_USER'), [], 'no variable by default')
  t.equal(loadConfig(defaults).gateway.rateLimit, undefined, 'no limiter')
  const values = { config: { rateLimit: '600/m', rateBurst: 40, maxConcurrentPerUser: 200_000 } }
  const lint = await helm.lint(values)
  t.equal(lint.code, 0, `helm lint --strict passes:\n${lint.stdout}${lint.stderr}`)
  const env = await renderedEnv(values)
  t.same([env.PODGATE_RATE_LIMIT, env.PODGATE_RATE_BURST, env.PODGATE_MAX_CONCURRENT_PER_USER], ['600/m', '40', '200000'])
  t.same(loadConfig(env).gateway.rateLimit, { perSecond: 10, burst: 40, maxConcurrent: 200_000 })
  for (const [bad, field] of [[{ config: { rateLimit: '0/s' } }, 'rateLimit'], [{ config: { rateLimit: '50/x' } }, 'rateLimit'], [{ config: { rateBurst: 5 } }, 'rateBurst']] as const) {
    const refused = await helm.template(bad)
    t.not(refused.code, 0, `${JSON.stringify(bad)}: refused, as podgate would refuse it`)
    t.match(refused.stderr, field)
  }
})

const CLIENT_LIMIT_CASES: { values: unknown, variable: string, rendered: string, read: (c: Config) => number | undefined, expected: number }[] = [
  { values: { config: { clientHeadersTimeout: '10s' } }, variable: 'PODGATE_CLIENT_HEADERS_TIMEOUT', rendered: '10s', read: (c) => c.gateway.clientHeadersTimeoutMs, expected: 10_000 },
  { values: { config: { clientHeadersTimeout: '1s' } }, variable: 'PODGATE_CLIENT_HEADERS_TIMEOUT', rendered: '1s', read: (c) => c.gateway.clientHeadersTimeoutMs, expected: 1_000 },
  { values: { config: { keepAliveTimeout: '75s' } }, variable: 'PODGATE_KEEP_ALIVE_TIMEOUT', rendered: '75s', read: (c) => c.gateway.keepAliveTimeoutMs, expected: 75_000 },
  { values: { config: { clientIdleTimeout: '10m' } }, variable: 'PODGATE_CLIENT_IDLE_TIMEOUT', rendered: '10m', read: (c) => c.gateway.clientIdleTimeoutMs, expected: 600_000 },
  { values: { config: { clientIdleTimeout: '301s' } }, variable: 'PODGATE_CLIENT_IDLE_TIMEOUT', rendered: '301s', read: (c) => c.gateway.clientIdleTimeoutMs, expected: 301_000 },
  { values: { config: { clientIdleTimeout: '0' } }, variable: 'PODGATE_CLIENT_IDLE_TIMEOUT', rendered: '0', read: (c) => c.gateway.clientIdleTimeoutMs, expected: 0 },
  { values: { config: { maxConnections: 5000 } }, variable: 'PODGATE_MAX_CONNECTIONS', rendered: '5000', read: (c) => c.gateway.maxConnections, expected: 5000 },
  // Helm reads numbers from values files as floats: a plain `quote` would render 1e+07.
  { values: { config: { maxConnections: 10_000_000 } }, variable: 'PODGATE_MAX_CONNECTIONS', rendered: '10000000', read: (c) => c.gateway.maxConnections, expected: 10_000_000 },
  { values: { config: { maxRequestHeaders: 16 } }, variable: 'PODGATE_MAX_REQUEST_HEADERS', rendered: '16', read: (c) => c.gateway.maxRequestHeaders, expected: 16 },
  { values: { config: { maxRequestHeaders: 1000 } }, variable: 'PODGATE_MAX_REQUEST_HEADERS', rendered: '1000', read: (c) => c.gateway.maxRequestHeaders, expected: 1000 },
  { values: { config: { upstreamConnections: 1 } }, variable: 'PODGATE_UPSTREAM_CONNECTIONS', rendered: '1', read: (c) => c.gateway.upstreamConnections, expected: 1 },
  { values: { config: { upstreamConnections: 65_535 } }, variable: 'PODGATE_UPSTREAM_CONNECTIONS', rendered: '65535', read: (c) => c.gateway.upstreamConnections, expected: 65_535 },
  { values: { auth: { maxAge: '12h' } }, variable: 'PODGATE_JWT_MAX_AGE', rendered: '12h', read: (c) => c.auth.maxAgeS, expected: 43_200 },
  { values: { auth: { maxAge: '1s' } }, variable: 'PODGATE_JWT_MAX_AGE', rendered: '1s', read: (c) => c.auth.maxAgeS, expected: 1 },
  { values: { auth: { tokenCacheSize: 1_000_000 } }, variable: 'PODGATE_TOKEN_CACHE_SIZE', rendered: '1000000', read: (c) => c.auth.tokenCacheSize, expected: 1_000_000 },
  { values: { auth: { maxTokenBytes: 1_048_576 } }, variable: 'PODGATE_MAX_TOKEN_BYTES', rendered: '1048576', read: (c) => c.auth.maxTokenBytes, expected: 1_048_576 },
]

for (const { values, variable, rendered, read, expected } of CLIENT_LIMIT_CASES) {
  void t.test(`client limits: ${JSON.stringify(values)} renders ${variable}=${rendered} and podgate starts with it`, async (t) => {
    const lint = await helm.lint(values)
    t.equal(lint.code, 0, `helm lint --strict passes:\n${lint.stdout}${lint.stderr}`)
    const env = await renderedEnv(values)
    t.equal(env[variable], rendered)
    t.equal(read(loadConfig(env)), expected)
  })
}

void t.test('client limits: all set at once, podgate starts with them', async (t) => {
  const values = {
    config: { clientHeadersTimeout: '10s', keepAliveTimeout: '75s', clientIdleTimeout: '20m', maxConnections: 20_000, maxRequestHeaders: 200, upstreamConnections: 32, bodyTimeout: '15m' },
    auth: { maxAge: '12h' },
  }
  const env = await renderedEnv(values)
  t.same(CLIENT_LIMIT_VARIABLES.map((name) => env[name]), ['10s', '75s', '20m', '20000', '200', '32', '12h'])
  t.same(clientLimits(loadConfig(env)), { clientHeadersTimeoutMs: 10_000, keepAliveTimeoutMs: 75_000, clientIdleTimeoutMs: 1_200_000, maxConnections: 20_000, maxRequestHeaders: 200, upstreamConnections: 32, maxAgeS: 43_200 })
})

void t.test('client limits: an empty clientIdleTimeout follows the upstream timeouts it must outlast', async (t) => {
  const env = await renderedEnv({ config: { bodyTimeout: '15m', startTimeout: '20m' } })
  t.equal(env.PODGATE_CLIENT_IDLE_TIMEOUT, undefined)
  t.equal(loadConfig(env).gateway.clientIdleTimeoutMs, 20 * 60_000 + 30_000, 'podgate derives it from the raised startTimeout')
})

// Values the schema's patterns admit but podgate would refuse at start: the chart refuses them
// too, at the same boundary, with a message that names the value.
const REFUSED_AT_START: { values: unknown, variable: string, value: string, message: string }[] = [
  { values: { config: { clientHeadersTimeout: '999ms' } }, variable: 'PODGATE_CLIENT_HEADERS_TIMEOUT', value: '999ms', message: 'config.clientHeadersTimeout (999ms) must be at least 1s' },
  { values: { config: { clientIdleTimeout: '300s' } }, variable: 'PODGATE_CLIENT_IDLE_TIMEOUT', value: '300s', message: 'config.clientIdleTimeout (300s) must be "0" (off), empty (podgate derives it), or longer than the longest wait podgate answers itself: config.bodyTimeout (5m)' },
  { values: { config: { clientIdleTimeout: '2m', startTimeout: '10m' } }, variable: 'PODGATE_CLIENT_IDLE_TIMEOUT', value: '2m', message: 'config.startTimeout (10m)' },
  { values: { auth: { maxAge: '500ms' } }, variable: 'PODGATE_JWT_MAX_AGE', value: '500ms', message: 'auth.maxAge (500ms) must be at least 1s' },
]

for (const { values, variable, value, message } of REFUSED_AT_START) {
  void t.test(`client limits: ${JSON.stringify(values)} is refused by helm as podgate would refuse ${variable}=${value}`, async (t) => {
    const rendered = await helm.template(values)
    t.not(rendered.code, 0, 'helm template fails')
    t.equal(rendered.stdout, '', 'and renders nothing')
    t.match(rendered.stderr, message)
    // The same setting given to podgate directly, on top of what the chart renders otherwise.
    const { config = {} } = values as { config?: Record<string, string> }
    const env = { ...await renderedEnv({ config: { ...config, clientHeadersTimeout: '30s', clientIdleTimeout: '' } }), [variable]: value }
    let refused: unknown
    try {
      loadConfig(env)
    } catch (err) {
      refused = err
    }
    t.ok(refused instanceof ConfigError, `podgate refuses ${variable}=${value}`)
    t.equal((refused as ConfigError | undefined)?.variable, variable, 'naming the variable')
  })
}

void t.test('the CRD ships with the chart', async (t) => {
  const manifests = await helm.render({}, ['--include-crds'])
  const crd = only(manifests, 'CustomResourceDefinition')
  t.equal(crd.metadata.name, 'userworkloads.podgate.dev')
})
