// The chart's auth.oidc values: nothing renders without an issuer; with one, the rendered
// environment (the client secret through the chart's Secret or an existing one) is what
// podgate starts with; values podgate would refuse are refused by the schema or the template.
import t from 'tap'
import { loadConfig } from '../../src/config.ts'
import { EXISTING_SECRET, Helm, installHelm, only, podgateContainer, renderedSecrets, resolveEnv, type Deployment, type Manifest } from './chart.ts'

let helm: Helm

t.before(async () => {
  helm = await Helm.create(t, await installHelm(t))
})

const KEYCLOAK = { issuer: 'https://keycloak.example.com/realms/main', clientId: 'podgate' }

function env (manifests: readonly Manifest[], extraSecrets: Record<string, Record<string, string>> = {}): Record<string, string> {
  const secrets = renderedSecrets(manifests)
  for (const [name, data] of Object.entries(extraSecrets)) secrets[name] = { ...secrets[name], ...data }
  return resolveEnv(podgateContainer(only<Deployment>(manifests, 'Deployment')), secrets)
}

function secretData (manifests: readonly Manifest[]): Record<string, string> {
  return (only(manifests, 'Secret') as unknown as { stringData: Record<string, string> }).stringData
}

function secretChecksum (manifests: readonly Manifest[]): string | undefined {
  return (only(manifests, 'Deployment') as unknown as { spec: { template: { metadata: { annotations: Record<string, string> } } } }).spec.template.metadata.annotations['checksum/secret']
}

function oidcVariables (rendered: Record<string, string>): string[] {
  return Object.keys(rendered).filter((name) => name.startsWith('PODGATE_OIDC_'))
}

void t.test('nothing renders without an issuer', async (t) => {
  const manifests = await helm.render({})
  t.same(oidcVariables(env(manifests)), [])
  t.notOk(Object.hasOwn(secretData(manifests), 'oidc-client-secret'))
})

void t.test('a confidential client: the secret goes through the chart\'s Secret, and podgate reads it all', async (t) => {
  const values = { auth: { oidc: { ...KEYCLOAK, clientSecret: 'kc-client-secret', scopes: ['openid', 'profile', 'groups'], redirectUrl: 'https://apps.example.com/.podgate/callback', sessionTtl: '12h' } } }
  const lint = await helm.lint(values)
  t.equal(lint.code, 0, `helm lint --strict passes:\n${lint.stdout}${lint.stderr}`)
  const manifests = await helm.render(values)
  t.equal(secretData(manifests)['oidc-client-secret'], 'kc-client-secret', 'in the Secret')
  const container = podgateContainer(only<Deployment>(manifests, 'Deployment'))
  t.notOk(JSON.stringify(container.env).includes('kc-client-secret'), 'not in the pod spec')
  const rendered = env(manifests)
  t.same(oidcVariables(rendered).sort(), [
    'PODGATE_OIDC_CLIENT_ID', 'PODGATE_OIDC_CLIENT_SECRET', 'PODGATE_OIDC_ISSUER', 'PODGATE_OIDC_REDIRECT_URL', 'PODGATE_OIDC_SCOPES', 'PODGATE_OIDC_SESSION_TTL', 'PODGATE_OIDC_USER_CLAIM',
  ])
  const oidc = loadConfig(rendered).auth.oidc
  t.equal(oidc?.issuer.href, 'https://keycloak.example.com/realms/main')
  t.equal(oidc?.clientSecret, 'kc-client-secret')
  t.same(oidc?.scopes, ['openid', 'profile', 'groups'])
  t.equal(oidc?.userClaim, 'preferred_username')
  t.equal(oidc?.redirectUrl?.href, 'https://apps.example.com/.podgate/callback')
  t.equal(oidc?.sessionTtlS, 43_200)

  const before = secretChecksum(await helm.render({ auth: { oidc: { ...KEYCLOAK, clientSecret: 'old' } } }))
  const after = secretChecksum(await helm.render({ auth: { oidc: { ...KEYCLOAK, clientSecret: 'new' } } }))
  t.not(before, after, 'a new client secret rolls the pods')
})

void t.test('a public client, and a client secret from an existing Secret', async (t) => {
  const publicClient = env(await helm.render({ auth: { oidc: KEYCLOAK } }))
  t.notOk(publicClient.PODGATE_OIDC_CLIENT_SECRET, 'no client secret: a public client')
  t.equal(loadConfig(publicClient).auth.oidc?.clientSecret, undefined)
  t.equal(publicClient.PODGATE_OIDC_SESSION_TTL, '8h')
  t.equal(publicClient.PODGATE_OIDC_SCOPES, 'openid profile email')

  const existing = { existingSecret: { ...EXISTING_SECRET, oidcClientSecretKey: 'oidc' }, auth: { oidc: KEYCLOAK } }
  const rendered = env(await helm.render(existing), { [EXISTING_SECRET.name]: { oidc: 'from-vault' } })
  t.equal(loadConfig(rendered).auth.oidc?.clientSecret, 'from-vault', 'read from existingSecret.oidcClientSecretKey')
  const withoutKey = env(await helm.render({ existingSecret: EXISTING_SECRET, auth: { oidc: { ...KEYCLOAK, clientSecret: 'ignored' } } }))
  t.notOk(withoutKey.PODGATE_OIDC_CLIENT_SECRET, 'with an existing Secret, only its key counts')
})

void t.test('values podgate would refuse are refused before install', async (t) => {
  const refusals: Array<[unknown, RegExp]> = [
    [{ auth: { jwksUrl: 'https://keycloak.example.com/certs', oidc: KEYCLOAK } }, /auth\.oidc\.issuer needs the shared secret/],
    [{ auth: { oidc: { issuer: KEYCLOAK.issuer } } }, /auth\.oidc\.clientId is required/],
    [{ auth: { oidc: { ...KEYCLOAK, scopes: ['profile'] } } }, /scopes/],
    [{ auth: { oidc: { ...KEYCLOAK, redirectUrl: 'https://apps.example.com/callback' } } }, /redirectUrl/],
    [{ auth: { oidc: { ...KEYCLOAK, issuer: 'keycloak' } } }, /issuer/],
    [{ auth: { oidc: { ...KEYCLOAK, sessionTtl: 'a day' } } }, /sessionTtl/],
  ]
  for (const [values, message] of refusals) {
    const result = await helm.template(values)
    t.not(result.code, 0, JSON.stringify(values))
    t.match(result.stderr, message)
  }
})
