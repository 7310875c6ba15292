// config.namespaces, config.clusterScope and config.provisioner: what a gateway serving several
// namespaces is granted (routing only, least privilege), what it is told (PODGATE_NAMESPACES…),
// and that the chart refuses exactly what podgate would refuse at start.
import t from 'tap'
import { loadConfig, servedNamespaces } from '../../src/config.ts'
import { ConfigError } from '../../src/errors.ts'
import {
  all, CHART_DIR, envVar, grants, Helm, installHelm, NAMESPACE, only, parseManifests, podgateContainer, RELEASE, renderedSecrets, resolveEnv,
  type Deployment, type Manifest, type PolicyRule,
} from './chart.ts'

const ROUTING_GRANTS = ['discovery.k8s.io/endpointslices list', 'discovery.k8s.io/endpointslices watch']
const VARIABLES = ['PODGATE_NAMESPACES', 'PODGATE_CLUSTER_SCOPE', 'PODGATE_PROVISIONER']

interface Binding { roleRef: { apiGroup: string, kind: string, name: string }, subjects: { kind: string, name: string, namespace: string }[] }

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

void t.test('defaults: the release namespace only, nothing more granted, no variable', async (t) => {
  const manifests = await helm.render({})
  t.equal(only(manifests, 'Role').metadata.namespace, NAMESPACE, 'the one Role is the release namespace\'s')
  t.equal(only(manifests, 'RoleBinding').metadata.namespace, NAMESPACE)
  t.same(all(manifests, 'ClusterRole'), [], 'no ClusterRole')
  t.same(all(manifests, 'ClusterRoleBinding'), [], 'no ClusterRoleBinding')
  const container = podgateContainer(only<Deployment>(manifests, 'Deployment'))
  for (const name of VARIABLES) t.equal(envVar(container, name), undefined, `${name} is not set`)
  const config = loadConfig(envOf(manifests))
  t.equal(config.namespaces, undefined)
  t.equal(config.provisioner, true)
  t.same(servedNamespaces(config, NAMESPACE), [NAMESPACE])
})

void t.test('the release namespace named alone: allowed with the provisioner, nothing more granted', async (t) => {
  const values = { config: { namespaces: [NAMESPACE] } }
  const lint = await helm.lint(values)
  t.equal(lint.code, 0, `helm lint --strict passes:\n${lint.stdout}${lint.stderr}`)
  const manifests = await helm.render(values)
  t.equal(all(manifests, 'Role').length, 1)
  t.same(all(manifests, 'ClusterRole'), [])
  const env = envOf(manifests)
  t.equal(env.PODGATE_NAMESPACES, NAMESPACE)
  t.same(servedNamespaces(loadConfig(env), NAMESPACE), [NAMESPACE])
})

void t.test('two tenant namespaces, routing only: list/watch EndpointSlices in each, bound to podgate\'s ServiceAccount', async (t) => {
  const tenants = ['team-a', 'team-b']
  const values = { config: { provisioner: false, namespaces: tenants } }
  const lint = await helm.lint(values)
  t.equal(lint.code, 0, `helm lint --strict passes:\n${lint.stdout}${lint.stderr}`)
  const manifests = await helm.render(values)
  const defaults = await helm.render({})
  const releaseRole = only<{ rules: PolicyRule[] }>(inNamespace(manifests, 'Role', NAMESPACE), 'Role')
  t.same(grants(releaseRole.rules), ROUTING_GRANTS, 'a routing-only gateway\'s own namespace: EndpointSlices only, none of the provisioning rights')
  t.ok(grants(only<{ rules: PolicyRule[] }>(defaults, 'Role').rules).length > ROUTING_GRANTS.length, 'with the provisioner, the release Role keeps them')
  t.same(all(manifests, 'ClusterRole'), [], 'no ClusterRole for a list')
  t.same(all(manifests, 'ClusterRoleBinding'), [], 'no ClusterRoleBinding for a list')
  t.same(all(manifests, 'Role').map((r) => r.metadata.namespace).sort(), [NAMESPACE, ...tenants].sort(), 'one Role per namespace, no more')
  for (const tenant of tenants) {
    const role = only<{ rules: PolicyRule[] }>(inNamespace(manifests, 'Role', tenant), 'Role')
    t.same(grants(role.rules), ROUTING_GRANTS, `${tenant}: exactly list/watch on EndpointSlices`)
    const binding = only<Binding>(inNamespace(manifests, 'RoleBinding', tenant), 'RoleBinding')
    t.same(binding.roleRef, { apiGroup: 'rbac.authorization.k8s.io', kind: 'Role', name: role.metadata.name }, `${tenant}: binds that Role`)
    t.same(binding.subjects, [podgateAccount(manifests)], `${tenant}: to the ServiceAccount in ${NAMESPACE}`)
  }
  const env = envOf(manifests)
  t.equal(env.PODGATE_NAMESPACES, 'team-a,team-b')
  t.equal(env.PODGATE_PROVISIONER, 'false')
  t.equal(env.PODGATE_CLUSTER_SCOPE, undefined)
  const config = loadConfig(env)
  t.same(config.namespaces, tenants)
  t.equal(config.provisioner, false)
  t.same(servedNamespaces(config, NAMESPACE), tenants, 'podgate serves exactly the namespaces the chart granted')
})

void t.test('the release namespace in the list gets no second Role', async (t) => {
  const manifests = await helm.render({ config: { provisioner: false, namespaces: [NAMESPACE, 'team-a'] } })
  t.same(all(manifests, 'Role').map((r) => r.metadata.namespace).sort(), [NAMESPACE, 'team-a'])
  t.equal(envOf(manifests).PODGATE_NAMESPACES, `${NAMESPACE},team-a`)
})

void t.test('rbac.create false: no Role anywhere, the variables still set', async (t) => {
  const manifests = await helm.render({ rbac: { create: false }, config: { provisioner: false, namespaces: ['team-a'] } })
  t.same([...all(manifests, 'Role'), ...all(manifests, 'RoleBinding')], [])
  t.equal(envOf(manifests).PODGATE_NAMESPACES, 'team-a')
})

void t.test('every namespace: a ClusterRole with exactly list/watch on EndpointSlices, bound to podgate\'s ServiceAccount', async (t) => {
  const values = { config: { provisioner: false, clusterScope: true, namespaces: ['*'] } }
  const lint = await helm.lint(values)
  t.equal(lint.code, 0, `helm lint --strict passes:\n${lint.stdout}${lint.stderr}`)
  const manifests = await helm.render(values)
  const clusterRole = only<{ rules: PolicyRule[] }>(manifests, 'ClusterRole')
  t.same(grants(clusterRole.rules), ROUTING_GRANTS)
  t.equal(clusterRole.metadata.namespace, undefined, 'cluster-scoped')
  const binding = only<Binding>(manifests, 'ClusterRoleBinding')
  t.same(binding.roleRef, { apiGroup: 'rbac.authorization.k8s.io', kind: 'ClusterRole', name: clusterRole.metadata.name })
  t.same(binding.subjects, [podgateAccount(manifests)])
  t.equal(only(manifests, 'Role').metadata.namespace, NAMESPACE, 'no per-namespace Role besides the release namespace\'s')
  const env = envOf(manifests)
  t.same([env.PODGATE_NAMESPACES, env.PODGATE_CLUSTER_SCOPE, env.PODGATE_PROVISIONER], ['*', 'true', 'false'])
  const config = loadConfig(env)
  t.equal(servedNamespaces(config, NAMESPACE), 'all')
})

void t.test('two releases\' grants in one tenant namespace do not collide', async (t) => {
  const values = { config: { provisioner: false, namespaces: ['team-a'] } }
  const other = await helm.run(['template', RELEASE, CHART_DIR, '--namespace', 'apps2', '-f', await helm.valuesFile(values)])
  t.equal(other.code, 0, other.stderr)
  const theirs = only(inNamespace(parseManifests(other.stdout), 'Role', 'team-a'), 'Role').metadata.name
  const ours = only(inNamespace(await helm.render(values), 'Role', 'team-a'), 'Role').metadata.name
  t.not(theirs, ours, 'the same release name installed in another namespace names its Role apart')
})

// What podgate refuses at start, refused by the chart first with the value's name.
const REFUSED: { name: string, values: unknown, message: string, env: Record<string, string>, podgate: string, bySchema?: true }[] = [
  {
    name: 'a tenant namespace with the provisioner on',
    values: { config: { namespaces: ['team-a'] } },
    message: `config.namespaces (team-a): the provisioner manages one namespace for now (${NAMESPACE}), so it cannot serve others: set config.provisioner=false for a routing-only gateway (PODGATE_PROVISIONER=false)`,
    env: { PODGATE_NAMESPACES: 'team-a' },
    podgate: 'set PODGATE_PROVISIONER=false for a routing-only gateway',
  },
  {
    name: 'the release namespace and another with the provisioner on',
    values: { config: { namespaces: [NAMESPACE, 'team-a'] } },
    message: `config.namespaces (${NAMESPACE},team-a): the provisioner manages one namespace`,
    env: { PODGATE_NAMESPACES: `${NAMESPACE},team-a` },
    podgate: 'set PODGATE_PROVISIONER=false',
  },
  {
    name: 'every namespace with the provisioner on',
    values: { config: { clusterScope: true, namespaces: ['*'] } },
    message: 'config.namespaces (*): the provisioner manages one namespace',
    env: { PODGATE_NAMESPACES: '*', PODGATE_CLUSTER_SCOPE: 'true' },
    podgate: 'set PODGATE_PROVISIONER=false',
  },
  {
    name: 'every namespace without clusterScope',
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
