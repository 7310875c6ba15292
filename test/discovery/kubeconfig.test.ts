// Finding the API server and the namespace: KUBECONFIG, in-cluster, ~/.kube/config.
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { delimiter, join } from 'node:path'
import t from 'tap'
import { stringify } from 'yaml'
import { ConfigError } from '../../src/errors.ts'
import { loadKubeConfig, resolveNamespace } from '../../src/kube/kubeconfig.ts'
import { kubeconfigYaml } from '../support/kubeconfig.ts'

async function tempDir (t: { teardown: (fn: () => unknown) => void }): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'podgate-kube-'))
  t.teardown(() => rm(dir, { recursive: true, force: true }))
  return dir
}

async function serviceAccount (dir: string, namespace?: string): Promise<string> {
  const sa = join(dir, 'serviceaccount')
  await mkdir(sa, { recursive: true })
  await writeFile(join(sa, 'token'), 'sa-token')
  await writeFile(join(sa, 'ca.crt'), 'not really a cert')
  if (namespace !== undefined) await writeFile(join(sa, 'namespace'), namespace)
  return sa
}

void t.test('KUBECONFIG: one file, or a path list merged like kubectl', async (t) => {
  const dir = await tempDir(t)
  const first = join(dir, 'first')
  const second = join(dir, 'second')
  await writeFile(first, kubeconfigYaml('http://127.0.0.1:6443', { namespace: 'team' }))
  await writeFile(second, stringify({
    clusters: [{ name: 'other', cluster: { server: 'https://other.example:6443' } }],
    users: [{ name: 'other-user', user: { token: 't' } }],
    contexts: [{ name: 'other', context: { cluster: 'other', user: 'other-user' } }],
    'current-context': 'other',
  }))
  const none = join(dir, 'missing-sa')
  const one = loadKubeConfig({ env: { KUBECONFIG: first }, serviceAccountDir: none, homeDir: dir })
  t.equal(one.source, 'kubeconfig')
  t.equal(one.kubeConfig.getCurrentCluster()?.server, 'http://127.0.0.1:6443')

  const merged = loadKubeConfig({ env: { KUBECONFIG: [join(dir, 'absent'), first, second].join(delimiter) }, serviceAccountDir: none, homeDir: dir })
  t.equal(merged.kubeConfig.getCurrentContext(), 'fake', 'the first file that sets current-context wins; missing files are skipped')
  t.same(merged.kubeConfig.getContexts().map((c) => c.name), ['fake', 'other'])

  const inCluster = await serviceAccount(dir, 'pods-ns')
  const explicit = loadKubeConfig({ env: { KUBECONFIG: first, KUBERNETES_SERVICE_HOST: '10.96.0.1', KUBERNETES_SERVICE_PORT: '443' }, serviceAccountDir: inCluster })
  t.equal(explicit.source, 'kubeconfig', 'an explicit KUBECONFIG wins over the service account')
})

void t.test('in-cluster: the service account token, CA and namespace', async (t) => {
  const dir = await tempDir(t)
  const sa = await serviceAccount(dir, 'podgate-system\n')
  const env = { KUBERNETES_SERVICE_HOST: '10.96.0.1', KUBERNETES_SERVICE_PORT: '443' }
  const { kubeConfig, source } = loadKubeConfig({ env, serviceAccountDir: sa, homeDir: dir })
  t.equal(source, 'in-cluster')
  t.match(kubeConfig.getCurrentCluster(), { server: 'https://10.96.0.1:443', caFile: join(sa, 'ca.crt'), skipTLSVerify: false })
  t.match(kubeConfig.getCurrentUser(), { authProvider: { name: 'tokenFile', config: { tokenFile: join(sa, 'token') } } })
  t.equal(resolveNamespace({ serviceAccountDir: sa, kubeConfig }), 'podgate-system')

  const v6 = loadKubeConfig({ env: { KUBERNETES_SERVICE_HOST: 'fd00::1', KUBERNETES_SERVICE_PORT: '443' }, serviceAccountDir: sa, homeDir: dir })
  t.equal(v6.kubeConfig.getCurrentCluster()?.server, 'https://[fd00::1]:443')

  const home = join(dir, 'home')
  await mkdir(join(home, '.kube'), { recursive: true })
  await writeFile(join(home, '.kube', 'config'), kubeconfigYaml('https://laptop.example:6443'))
  const noToken = loadKubeConfig({ env, serviceAccountDir: join(dir, 'elsewhere'), homeDir: home })
  t.equal(noToken.source, 'home', 'without a token file it is not in-cluster; ~/.kube/config is next')
  t.equal(noToken.kubeConfig.getCurrentCluster()?.server, 'https://laptop.example:6443')
})

void t.test('every unusable configuration is one ConfigError naming what to fix', async (t) => {
  const dir = await tempDir(t)
  const none = join(dir, 'no-sa')
  const write = async (name: string, text: string): Promise<string> => {
    const file = join(dir, name)
    await writeFile(file, text)
    return file
  }
  const cases: Array<[string, string, RegExp]> = [
    ['missing files', join(dir, 'nope'), /none of the listed files exists/],
    ['not YAML', await write('bad-yaml', 'clusters: [\n'), /cannot load kubeconfig/],
    ['cluster without server', await write('no-server', stringify({ clusters: [{ name: 'c', cluster: {} }], contexts: [], users: [] })), /cannot load kubeconfig.*server/],
    ['no current-context', await write('no-context', stringify({ clusters: [], contexts: [], users: [] })), /sets no current-context/],
    ['unknown current-context', await write('bad-context', stringify({ clusters: [], contexts: [], users: [], 'current-context': 'x' })), /"x" is not defined/],
    ['plain http without skip-tls-verify', await write('http', stringify({
      clusters: [{ name: 'c', cluster: { server: 'http://127.0.0.1:8080' } }],
      users: [{ name: 'u', user: { token: 't' } }],
      contexts: [{ name: 'x', context: { cluster: 'c', user: 'u' } }],
      'current-context': 'x',
    })), /uses http:\/\/.*insecure-skip-tls-verify/],
    ['undefined user', await write('no-user', stringify({
      clusters: [{ name: 'c', cluster: { server: 'https://k:6443' } }],
      users: [],
      contexts: [{ name: 'x', context: { cluster: 'c', user: 'ghost' } }],
      'current-context': 'x',
    })), /user "ghost"/],
  ]
  for (const [name, file, message] of cases) {
    t.throws(() => loadKubeConfig({ env: { KUBECONFIG: file }, serviceAccountDir: none, homeDir: dir }), { name: 'ConfigError', variable: 'KUBECONFIG', message }, name)
  }
  const nothing = (): unknown => loadKubeConfig({ env: {}, serviceAccountDir: none, homeDir: join(dir, 'empty-home') })
  t.throws(nothing, ConfigError)
  t.throws(nothing, { message: /KUBECONFIG is unset.*service account.*\.kube\/config/ })
})

void t.test('namespace: PODGATE_NAMESPACE, the pod\'s own, the context\'s, default', async (t) => {
  const dir = await tempDir(t)
  const sa = await serviceAccount(dir, 'pod-ns')
  const file = join(dir, 'config')
  await writeFile(file, kubeconfigYaml('http://127.0.0.1:1', { namespace: 'context-ns' }))
  const { kubeConfig } = loadKubeConfig({ env: { KUBECONFIG: file } })
  const noSa = join(dir, 'no-sa')
  t.equal(resolveNamespace({ configured: 'chosen', serviceAccountDir: sa, kubeConfig }), 'chosen')
  t.equal(resolveNamespace({ serviceAccountDir: sa, kubeConfig }), 'pod-ns')
  t.equal(resolveNamespace({ serviceAccountDir: noSa, kubeConfig }), 'context-ns')
  t.equal(resolveNamespace({ serviceAccountDir: noSa }), 'default')
  const bad = join(dir, 'bad-sa')
  await mkdir(bad)
  await writeFile(join(bad, 'namespace'), 'Not A Namespace')
  t.throws(() => resolveNamespace({ serviceAccountDir: bad }), { name: 'ConfigError', variable: 'PODGATE_NAMESPACE', message: /holds no valid namespace name/ })
})
