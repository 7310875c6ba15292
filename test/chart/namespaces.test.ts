// config.namespaces, config.clusterScope and config.provisioner: what a podgate serving several
// namespaces is granted (the provisioner's workload rules in each served namespace, the Lease in
// its own; routing only: EndpointSlices), what it is told (PODGATE_NAMESPACES…), and that the
// chart refuses exactly what podgate would refuse at start.
import t from 'tap'
import { loadConfig, servedNamespaces } from '../../src/config.ts'
import { ConfigError } from '../../src/errors.ts'
import {
  all, CHART_DIR, envVar, grants, Helm, installHelm, NAMESPACE, only, parseManifests, podgateContainer, RELEASE, renderedSecrets, resolveEnv,
  type Deployment, type Manifest, type PolicyRule,
} from './chart.ts'

const ROUTING_GRANTS = ['discovery.k8s.io/endpointslices list', 'discovery.k8s.io/endpointslices watch']
const CHILD_VERBS = ['create', 'get', 'list', 'watch', 'patch', 'delete']
// What the provisioner does in every namespace it serves: route, and keep UserWorkloads and their children.
const WORKLOAD_GRANTS = [
  ...ROUTING_GRANTS,
  ...['apps/deployments', '/services', '/persistentvolumeclaims', 'networking.k8s.io/networkpolicies'].flatMap((r) => CHILD_VERBS.map((v) => `${r} ${v}`)),
  ...['create', 'get', 'list', 'watch', 'patch', 'update', 'delete'].map((v) => `podgate.dev/userworkloads ${v}`),
  ...['get', 'patch', 'update'].map((v) => `podgate.dev/userworkloads/status ${v}`),
  ...['/pods', '/events'].flatMap((r) => ['get', 'list', 'watch'].map((v) => `${r} ${v}`)),
].sort()
// Leader election: in podgate's own namespace only, wherever the tenants are.
const LEASE_GRANTS = ['get', 'create', 'update'].map((v) => `coordination.k8s.io/leases ${v}`).sort()
const VARIABLES = ['PODGATE_NAMESPACES', 'PODGATE_CLUSTER_SCOPE', 'PODGATE_PROVISIONER']

interface Binding { roleRef: { apiGroup: string, kind: string, name: string }, subjects: { kind: string, name: string, namespace: string }[] }
type Role = Manifest & { rules: PolicyRule[] }
type Asserts = Pick<typeof t, 'same' | 'equal'>

let helm: Helm

t.before(async () => {
  helm = await Helm.create(t, await installHelm(t))
})

/** The podgate container's environment as the kubelet would set it. */
function envOf (manifests: readonly Manifest[]): Record<string, string> {
  return resolveEnv(podgateContainer(only<Deployment>(manifests, 'Deployment')), renderedSecrets(manifests))
}

function inNamespace (manifests: readonly Manifest[], kind: string, namespace: string): Manifest[] {
  return all(manifests, kind).filter((m) => m.metadata.namespace === namespace)
}

/** The ServiceAccount podgate runs as, as a binding subject. */
function podgateAccount (manifests: readonly Manifest[]): Binding['subjects'][number] {
  return { kind: 'ServiceAccount', name: only(manifests, 'ServiceAccount').metadata.name, namespace: NAMESPACE }
}

/** The grants of the one Role in `namespace`, after checking that one RoleBinding there binds it, and only it, to podgate. */
function boundGrants (t: Asserts, manifests: readonly Manifest[], namespace: string): string[] {
  const role = only<Role>(inNamespace(manifests, 'Role', namespace), 'Role')
  const binding = only<Binding>(inNamespace(manifests, 'RoleBinding', namespace), 'RoleBinding')
  t.same(binding.roleRef, { apiGroup: 'rbac.authorization.k8s.io', kind: 'Role', name: role.metadata.name }, `${namespace}: the RoleBinding binds its Role`)
  t.same(binding.subjects, [podgateAccount(manifests)], `${namespace}: to the ServiceAccount in ${NAMESPACE}`)
  return grants(role.rules)
}

/** The grants of the one ClusterRole, after checking that one ClusterRoleBinding binds it, and only it, to podgate. */
function clusterGrants (t: Asserts, manifests: readonly Manifest[]): string[] {
  const role = only<Role>(manifests, 'ClusterRole')
  t.equal(role.metadata.namespace, undefined, 'cluster-scoped')
  const binding = only<Binding>(manifests, 'ClusterRoleBinding')
  t.same(binding.roleRef, { apiGroup: 'rbac.authorization.k8s.io', kind: 'ClusterRole', name: role.metadata.name })
  t.same(binding.subjects, [podgateAccount(manifests)])
  return grants(role.rules)
}

/**
 * Where the rendered RBAC lets podgate hold every one of `wanted`: the namespaces whose Role
 * has them all, or 'all' when the ClusterRole does.
 */
function grantedIn (manifests: readonly Manifest[], wanted: readonly string[]): readonly string[] | 'all' {
  const covers = (role: Manifest): boolean => {
    const held = new Set(grants((role as Role).rules))
    return wanted.every((grant) => held.has(grant))
  }
  if (all(manifests, 'ClusterRole').some(covers)) return 'all'
  return all(manifests, 'Role').filter(covers).map((r) => r.metadata.namespace ?? '').sort()
}

void t.test('defaults: the release namespace only, nothing more granted, no variable', async (t) => {
  const manifests = await helm.render({})
  t.same(boundGrants(t, manifests, NAMESPACE), [...WORKLOAD_GRANTS, ...LEASE_GRANTS].sort(), 'the one Role: the workload rules and the Lease')
  t.equal(all(manifests, 'Role').length, 1, 'the one Role is the release namespace\'s')
  t.same(all(manifests, 'ClusterRole'), [], 'no ClusterRole')
  t.same(all(manifests, 'ClusterRoleBinding'), [], 'no ClusterRoleBinding')
  const container = podgateContainer(only<Deployment>(manifests, 'Deployment'))
  for (const name of VARIABLES) t.equal(envVar(container, name), undefined, `${name} is not set`)
  const config = loadConfig(envOf(manifests))
  t.equal(config.namespaces, undefined)
  t.equal(config.provisioner, true)
  t.same(servedNamespaces(config, NAMESPACE), [NAMESPACE])
})

void t.test('the release namespace named alone: the same one Role, nothing more granted', async (t) => {
  const values = { config: { namespaces: [NAMESPACE] } }
  const lint = await helm.lint(values)
  t.equal(lint.code, 0, `helm lint --strict passes:\n${lint.stdout}${lint.stderr}`)
  const manifests = await helm.render(values)
  t.equal(all(manifests, 'Role').length, 1)
  t.same(boundGrants(t, manifests, NAMESPACE), [...WORKLOAD_GRANTS, ...LEASE_GRANTS].sort())
  t.same(all(manifests, 'ClusterRole'), [])
  const env = envOf(manifests)
  t.equal(env.PODGATE_NAMESPACES, NAMESPACE)
  t.same(servedNamespaces(loadConfig(env), NAMESPACE), [NAMESPACE])
})

void t.test('two tenant namespaces with the provisioner: its workload rules in each, the Lease in its own, nothing cluster-scoped', async (t) => {
  const tenants = ['team-a', 'team-b']
  const values = { config: { namespaces: tenants } }
  const lint = await helm.lint(values)
  t.equal(lint.code, 0, `helm lint --strict passes:\n${lint.stdout}${lint.stderr}`)
  const manifests = await helm.render(values)
  t.same(all(manifests, 'Role').map((r) => r.metadata.namespace).sort(), [NAMESPACE, ...tenants].sort(), 'one Role per namespace, no more')
  t.same(all(manifests, 'RoleBinding').map((r) => r.metadata.namespace).sort(), [NAMESPACE, ...tenants].sort(), 'one RoleBinding per namespace, no more')
  t.same(boundGrants(t, manifests, NAMESPACE), LEASE_GRANTS, `${NAMESPACE} is not served: the Lease and nothing else`)
  for (const tenant of tenants) {
    t.same(boundGrants(t, manifests, tenant), WORKLOAD_GRANTS, `${tenant}: exactly the provisioner's workload rules, no Lease`)
  }
  t.same(all(manifests, 'ClusterRole'), [], 'no ClusterRole for a list')
  t.same(all(manifests, 'ClusterRoleBinding'), [], 'no ClusterRoleBinding for a list')
  const env = envOf(manifests)
  t.equal(env.PODGATE_NAMESPACES, 'team-a,team-b')
  t.equal(env.PODGATE_PROVISIONER, undefined, 'the provisioner runs (the default)')
  t.equal(env.PODGATE_CLUSTER_SCOPE, undefined)
  const config = loadConfig(env)
  t.same(config.namespaces, tenants)
  t.equal(config.provisioner, true)
  t.same(servedNamespaces(config, NAMESPACE), tenants)
  t.same(grantedIn(manifests, WORKLOAD_GRANTS), tenants, 'podgate provisions exactly where the chart granted it')
  t.same(grantedIn(manifests, LEASE_GRANTS), [NAMESPACE], 'and elects its leader in its own namespace')
})

void t.test('the release namespace among the tenants: its Role holds the workload rules and the Lease', async (t) => {
  const manifests = await helm.render({ config: { namespaces: ['team-a', NAMESPACE] } })
  t.same(all(manifests, 'Role').map((r) => r.metadata.namespace).sort(), [NAMESPACE, 'team-a'], 'no second Role in the release namespace')
  t.same(boundGrants(t, manifests, NAMESPACE), [...WORKLOAD_GRANTS, ...LEASE_GRANTS].sort())
  t.same(boundGrants(t, manifests, 'team-a'), WORKLOAD_GRANTS)
  const config = loadConfig(envOf(manifests))
  t.same(servedNamespaces(config, NAMESPACE), ['team-a', NAMESPACE])
  t.same(grantedIn(manifests, WORKLOAD_GRANTS), [NAMESPACE, 'team-a'])
})

void t.test('every namespace with the provisioner: a ClusterRole with its workload rules, the Lease still a Role in its own namespace', async (t) => {
  const values = { config: { clusterScope: true, namespaces: ['*'] } }
  const lint = await helm.lint(values)
  t.equal(lint.code, 0, `helm lint --strict passes:\n${lint.stdout}${lint.stderr}`)
  const manifests = await helm.render(values)
  t.same(clusterGrants(t, manifests), WORKLOAD_GRANTS, 'exactly the workload rules, no Lease')
  t.equal(all(manifests, 'Role').length, 1, 'no per-namespace Role besides the release namespace\'s')
  t.same(boundGrants(t, manifests, NAMESPACE), LEASE_GRANTS, 'the release namespace\'s Role: the Lease only (the ClusterRole covers the rest)')
  const env = envOf(manifests)
  t.same([env.PODGATE_NAMESPACES, env.PODGATE_CLUSTER_SCOPE, env.PODGATE_PROVISIONER], ['*', 'true', undefined])
  const config = loadConfig(env)
  t.equal(servedNamespaces(config, NAMESPACE), 'all')
  t.equal(grantedIn(manifests, WORKLOAD_GRANTS), 'all')
  t.same(grantedIn(manifests, LEASE_GRANTS), [NAMESPACE])
})

void t.test('two tenant namespaces, routing only: list/watch EndpointSlices in each, bound to podgate\'s ServiceAccount', async (t) => {
  const tenants = ['team-a', 'team-b']
  const values = { config: { provisioner: false, namespaces: tenants } }
  const lint = await helm.lint(values)
  t.equal(lint.code, 0, `helm lint --strict passes:\n${lint.stdout}${lint.stderr}`)
  const manifests = await helm.render(values)
  t.same(boundGrants(t, manifests, NAMESPACE), ROUTING_GRANTS, 'a routing-only gateway\'s own namespace: EndpointSlices only, none of the provisioning rights')
  t.same(all(manifests, 'ClusterRole'), [], 'no ClusterRole for a list')
  t.same(all(manifests, 'ClusterRoleBinding'), [], 'no ClusterRoleBinding for a list')
  t.same(all(manifests, 'Role').map((r) => r.metadata.namespace).sort(), [NAMESPACE, ...tenants].sort(), 'one Role per namespace, no more')
  for (const tenant of tenants) {
    t.same(boundGrants(t, manifests, tenant), ROUTING_GRANTS, `${tenant}: exactly list/watch on EndpointSlices`)
  }
  const env = envOf(manifests)
  t.equal(env.PODGATE_NAMESPACES, 'team-a,team-b')
  t.equal(env.PODGATE_PROVISIONER, 'false')
  t.equal(env.PODGATE_CLUSTER_SCOPE, undefined)
  const config = loadConfig(env)
  t.same(config.namespaces, tenants)
  t.equal(config.provisioner, false)
  t.same(servedNamespaces(config, NAMESPACE), tenants, 'podgate serves the namespaces the chart granted')
  t.same(grantedIn(manifests, WORKLOAD_GRANTS), [], 'and provisions nowhere')
})

void t.test('routing only, the release namespace in the list: no second Role', async (t) => {
  const manifests = await helm.render({ config: { provisioner: false, namespaces: [NAMESPACE, 'team-a'] } })
  t.same(all(manifests, 'Role').map((r) => r.metadata.namespace).sort(), [NAMESPACE, 'team-a'])
  t.equal(envOf(manifests).PODGATE_NAMESPACES, `${NAMESPACE},team-a`)
})

for (const provisioner of [true, false]) {
  void t.test(`rbac.create false${provisioner ? '' : ', routing only'}: no Role anywhere, the variables still set`, async (t) => {
    const manifests = await helm.render({ rbac: { create: false }, config: { provisioner, namespaces: ['team-a'] } })
    t.same([...all(manifests, 'Role'), ...all(manifests, 'RoleBinding'), ...all(manifests, 'ClusterRole')], [])
    t.equal(envOf(manifests).PODGATE_NAMESPACES, 'team-a')
  })
}

void t.test('every namespace, routing only: a ClusterRole with exactly list/watch on EndpointSlices, bound to podgate\'s ServiceAccount', async (t) => {
  const values = { config: { provisioner: false, clusterScope: true, namespaces: ['*'] } }
  const lint = await helm.lint(values)
  t.equal(lint.code, 0, `helm lint --strict passes:\n${lint.stdout}${lint.stderr}`)
  const manifests = await helm.render(values)
  t.same(clusterGrants(t, manifests), ROUTING_GRANTS)
  t.equal(all(manifests, 'Role').length, 1, 'no per-namespace Role besides the release namespace\'s')
  t.same(boundGrants(t, manifests, NAMESPACE), ROUTING_GRANTS)
  const env = envOf(manifests)
  t.same([env.PODGATE_NAMESPACES, env.PODGATE_CLUSTER_SCOPE, env.PODGATE_PROVISIONER], ['*', 'true', 'false'])
  const config = loadConfig(env)
  t.equal(servedNamespaces(config, NAMESPACE), 'all')
})

for (const provisioner of [true, false]) {
  void t.test(`two releases' grants in one tenant namespace do not collide${provisioner ? '' : ' (routing only)'}`, async (t) => {
    const values = { config: { provisioner, namespaces: ['team-a'] } }
    const other = await helm.run(['template', RELEASE, CHART_DIR, '--namespace', 'apps2', '-f', await helm.valuesFile(values)])
    t.equal(other.code, 0, other.stderr)
    const theirs = only(inNamespace(parseManifests(other.stdout), 'Role', 'team-a'), 'Role').metadata.name
    const ours = only(inNamespace(await helm.render(values), 'Role', 'team-a'), 'Role').metadata.name
    t.not(theirs, ours, 'the same release name installed in another namespace names its Role apart')
  })
}

// What podgate refuses at start, refused by the chart first with the value's name.
const REFUSED: { name: string, values: unknown, message: string, env: Record<string, string>, podgate: string, bySchema?: true }[] = [
  {
    name: 'every namespace without clusterScope, with the provisioner',
    values: { config: { namespaces: ['*'] } },
    message: 'config.namespaces ["*"] watches EndpointSlices in every namespace and needs cluster-wide list/watch rights: set config.clusterScope=true',
    env: { PODGATE_NAMESPACES: '*' },
    podgate: 'set PODGATE_CLUSTER_SCOPE=true',
  },
  {
    name: 'every namespace without clusterScope, routing only',
    values: { config: { provisioner: false, namespaces: ['*'] } },
    message: 'config.namespaces ["*"] watches EndpointSlices in every namespace and needs cluster-wide list/watch rights: set config.clusterScope=true',
    env: { PODGATE_NAMESPACES: '*', PODGATE_PROVISIONER: 'false' },
    podgate: 'set PODGATE_CLUSTER_SCOPE=true',
  },
  {
    name: '* mixed with names',
    values: { config: { provisioner: false, clusterScope: true, namespaces: ['*', 'team-a'] } },
    message: "at '/config/namespaces'",
    env: { PODGATE_NAMESPACES: '*,team-a', PODGATE_PROVISIONER: 'false', PODGATE_CLUSTER_SCOPE: 'true' },
    podgate: 'either * (every namespace) or a list of namespaces, not both',
    bySchema: true,
  },
  {
    name: 'a namespace name that is not a DNS label',
    values: { config: { provisioner: false, namespaces: ['Team_A'] } },
    message: "at '/config/namespaces'",
    env: { PODGATE_NAMESPACES: 'Team_A', PODGATE_PROVISIONER: 'false' },
    podgate: 'is not a namespace name',
    bySchema: true,
  },
]

for (const { name, values, message, env, podgate, bySchema } of REFUSED) {
  void t.test(`refuses ${name}, as podgate does`, async (t) => {
    const rendered = await helm.template(values)
    t.not(rendered.code, 0, 'helm template fails')
    t.equal(rendered.stdout, '', 'and renders nothing')
    t.match(rendered.stderr, message)
    if (bySchema === true) {
      const lint = await helm.lint(values)
      t.not(lint.code, 0, 'helm lint fails too')
      t.match(lint.stdout + lint.stderr, message)
    }
    let refused: unknown
    try {
      const config = loadConfig({ ...envOf(await helm.render({})), ...env })
      servedNamespaces(config, NAMESPACE)
    } catch (err) {
      refused = err
    }
    t.ok(refused instanceof ConfigError, 'podgate refuses the same setting')
    t.equal((refused as ConfigError | undefined)?.variable, 'PODGATE_NAMESPACES')
    t.match((refused as Error | undefined)?.message, podgate)
  })
}

void t.test('without the schema, the template still refuses * mixed with names', async (t) => {
  const rendered = await helm.template({ config: { provisioner: false, clusterScope: true, namespaces: ['*', 'team-a'] } }, ['--skip-schema-validation'])
  t.not(rendered.code, 0)
  t.match(rendered.stderr, 'config.namespaces (*,team-a): either ["*"] (every namespace) or a list of namespaces, not both')
})
