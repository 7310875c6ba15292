// The Kubernetes guide and the migration guide stay true to the chart: every value they name
// exists, every values example renders, and every manifest example points at what the chart
// actually creates.
import t from 'tap'
import { readFile } from 'node:fs/promises'
import { join } from 'node:path'
import { parse } from 'yaml'
import { all, CHART_DIR, Helm, installHelm, only, parseManifests, REPO_DIR, type Manifest } from './chart.ts'

const DOCS = ['docs/kubernetes.md', 'docs/migration.md']
const VALUE_PATH = /^[a-zA-Z][A-Za-z0-9]*(?:\.[A-Za-z0-9]+)+$/

interface CodeBlock { readonly lang: string, readonly body: string }

function codeBlocks (markdown: string): CodeBlock[] {
  return [...markdown.matchAll(/^( *)```(\w*)\n([\s\S]*?)^\1```$/gm)].map((m) => ({
    lang: m[2] ?? '',
    body: (m[3] ?? '').split('\n').map((line) => line.slice((m[1] ?? '').length)).join('\n'),
  }))
}

/** Dotted names in inline code, and `--set` keys, that start with a top-level value. */
function namedValues (markdown: string, topLevel: ReadonlySet<string>): string[] {
  const inline = [...markdown.matchAll(/`([^`\n]+)`/g)].map((m) => m[1] ?? '')
  const set = [...markdown.matchAll(/--set(?:-string|-file)? ([A-Za-z0-9.]+)=/g)].map((m) => m[1] ?? '')
  return [...new Set([...inline, ...set])].filter((name) => VALUE_PATH.test(name) && topLevel.has(name.split('.')[0] ?? ''))
}

function resolves (values: unknown, path: string): boolean {
  let node = values
  for (const key of path.split('.')) {
    if (node === null || typeof node !== 'object' || !Object.hasOwn(node, key)) return false
    node = (node as Record<string, unknown>)[key]
  }
  return true
}

const chartValues = parse(await readFile(join(CHART_DIR, 'values.yaml'), 'utf8')) as Record<string, unknown>
const topLevel = new Set(Object.keys(chartValues))
const docs = await Promise.all(DOCS.map(async (file) => ({ file, text: await readFile(join(REPO_DIR, file), 'utf8') })))

let helm: Helm
// What `helm install podgate charts/podgate -n podgate` (the guide's command) creates.
let installed: Manifest[]

t.before(async () => {
  helm = await Helm.create(t, await installHelm(t))
  const rendered = await helm.run(['template', 'podgate', CHART_DIR, '--namespace', 'podgate'])
  if (rendered.code !== 0) throw new Error(rendered.stderr)
  installed = parseManifests(rendered.stdout)
})

void t.test('the value-name check catches a name that does not exist', (t) => {
  const names = namedValues('set `auth.jwksUri` or `auth.jwksUrl`, `podgate.dev/user`, --set replicaCount.x=1', topLevel)
  t.same(names, ['auth.jwksUri', 'auth.jwksUrl', 'replicaCount.x'])
  t.same(names.filter((n) => !resolves(chartValues, n)), ['auth.jwksUri', 'replicaCount.x'])
  t.end()
})

for (const { file, text } of docs) {
  void t.test(`${file}: every value it names exists in values.yaml`, (t) => {
    const names = namedValues(text, topLevel)
    t.ok(names.length > 0 || file.endsWith('migration.md'), 'the guide names values')
    t.same(names.filter((name) => !resolves(chartValues, name)), [], names.join(', '))
    t.end()
  })

  void t.test(`${file}: every values example renders`, async (t) => {
    const examples = codeBlocks(text).filter((b) => b.lang === 'yaml' && b.body.startsWith('# values.yaml'))
    for (const example of examples) {
      const rendered = await helm.template(parse(example.body))
      t.equal(rendered.code, 0, `${example.body.split('\n').slice(1, 3).join(' / ')}…: ${rendered.stderr}`)
    }
  })

  void t.test(`${file}: every manifest example parses and targets the chart's objects`, async (t) => {
    const service = only<{ spec: { ports: { name: string, port: number }[] } }>(installed, 'Service')
    const httpPort = service.spec.ports.find((p) => p.name === 'http')
    const crd = parseManifests(await readFile(join(CHART_DIR, 'crds', 'userworkloads.yaml'), 'utf8'))[0] as unknown as { spec: { group: string, names: { kind: string } } }
    const manifests = codeBlocks(text).filter((b) => b.lang === 'yaml' && !b.body.startsWith('# values.yaml')).flatMap((b) => parseManifests(b.body))
    for (const manifest of manifests) {
      const json = JSON.stringify(manifest)
      if (manifest.kind === 'Ingress') {
        t.match(json, `"service":{"name":"${service.metadata.name}","port":{"name":"http"}}`, 'Ingress backend is the podgate Service, port http')
        t.equal(manifest.metadata.namespace, service.metadata.namespace, 'an Ingress can only reach Services in its own namespace')
      } else if (manifest.kind === 'IngressRoute') {
        t.match(json, `"services":[{"name":"${service.metadata.name}","port":"http"}]`)
      } else if (manifest.kind === 'HTTPRoute') {
        t.match(json, `"backendRefs":[{"name":"${service.metadata.name}","port":${httpPort?.port}}]`)
      } else if (manifest.kind === crd.spec.names.kind) {
        t.equal(manifest.apiVersion, `${crd.spec.group}/v1alpha1`)
        t.equal(manifest.metadata.namespace, service.metadata.namespace)
      } else {
        t.equal(manifest.kind, 'Service', 'the only other example is a Service alias')
      }
    }
  })
}

void t.test('docs/kubernetes.md: the defaults in its values table are those of values.yaml', (t) => {
  const guide = docs.find((d) => d.file === 'docs/kubernetes.md')?.text ?? ''
  // Rows whose default is a single literal, e.g. | `auth.cookieName` | `session` | … |
  const rows = [...guide.matchAll(/^\| `([A-Za-z0-9.]+)` \| `([^`]*)` \|/gm)]
  t.ok(rows.length >= 8, `the table has literal defaults (${rows.length})`)
  for (const [, name = '', literal = ''] of rows) {
    const value = name.split('.').reduce<unknown>((node, key) => (node as Record<string, unknown>)[key], chartValues)
    t.same(parse(literal), value, `${name}: the guide says ${literal}`)
  }
  t.end()
})

void t.test('docs/kubernetes.md: the commands it gives name what the chart creates', (t) => {
  const guide = docs.find((d) => d.file === 'docs/kubernetes.md')?.text ?? ''
  const secret = only<{ stringData: Record<string, string> }>(installed, 'Secret')
  t.match(guide, `get secret ${secret.metadata.name} -o jsonpath='{.data.admin-token}'`)
  t.ok(Object.hasOwn(secret.stringData, 'admin-token'))
  const deployment = only(installed, 'Deployment')
  t.match(guide, `exec deploy/${deployment.metadata.name} -- node dist/main.js token alice`)
  t.match(guide, `port-forward svc/${only(installed, 'Service').metadata.name} 9090:9090`)

  const role = only<{ rules: { apiGroups: string[], resources: string[], verbs: string[] }[] }>(installed, 'Role')
  const table = guide.slice(guide.indexOf('## What the chart grants'))
  for (const rule of role.rules) {
    const group = rule.apiGroups[0] === '' ? 'core' : `\`${rule.apiGroups[0] ?? ''}\``
    t.match(table, `| ${group} | ${rule.resources.join(', ')} | ${rule.verbs.join(', ')} |`, `the RBAC table lists ${rule.resources.join(', ')}`)
  }
  t.same(all(installed, 'ClusterRole'), [])
  t.end()
})
