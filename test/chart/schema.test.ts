// Bad values fail `helm template` (and so `helm install`) with a message that names the field;
// schema violations fail `helm lint` too (lint deliberately ignores a template's `fail`).
// NOTES.txt tells a new user how to reach their first workload.
import t from 'tap'
import { DEFAULT_COOKIE_NAME } from '../../src/config.ts'
import { FULLNAME, Helm, installHelm, NAMESPACE } from './chart.ts'

let helm: Helm

t.before(async () => {
  helm = await Helm.create(t, await installHelm(t))
})

const REJECTED: { name: string, values: unknown, message: string | RegExp, bySchema?: false }[] = [
  { name: 'a string where a number belongs', values: { replicaCount: 'three' }, message: "at '/replicaCount': got string, want integer" },
  { name: 'an unknown top-level key', values: { replicas: 3 }, message: "additional properties 'replicas' not allowed" },
  { name: 'an unknown nested key', values: { config: { spawnOnDemmand: true } }, message: "at '/config': additional properties 'spawnOnDemmand' not allowed" },
  { name: 'a boolean given as a word', values: { config: { spawnOnDemand: 'yes' } }, message: "at '/config/spawnOnDemand': got string, want boolean" },
  { name: 'a duration podgate cannot parse', values: { config: { startTimeout: '2 minutes' } }, message: "at '/config/startTimeout'" },
  { name: 'a log level podgate does not know', values: { config: { logLevel: 'verbose' } }, message: "at '/config/logLevel'" },
  { name: 'a JWT secret shorter than 32 bytes', values: { auth: { jwtSecret: 'short' } }, message: "at '/auth/jwtSecret'" },
  { name: 'an admin token shorter than 16 characters', values: { adminToken: 'admin' }, message: "at '/adminToken'" },
  { name: 'a JWKS URL that is not http(s)', values: { auth: { jwksUrl: 'idp.example.com/certs' } }, message: "at '/auth/jwksUrl'" },
  { name: 'a private key where a public key belongs', values: { auth: { publicKey: '-----BEGIN PRIVATE KEY-----\nMC4CAQ==\n-----END PRIVATE KEY-----\n' } }, message: "at '/auth/publicKey'" },
  { name: 'an unknown algorithm', values: { auth: { algorithms: ['none'] } }, message: "at '/auth/algorithms/0'" },
  { name: 'too few request header fields', values: { config: { maxRequestHeaders: 5 } }, message: "at '/config/maxRequestHeaders': minimum: got 5, want 16" },
  { name: 'too many request header fields', values: { config: { maxRequestHeaders: 5000 } }, message: "at '/config/maxRequestHeaders': maximum: got 5,000, want 1,000" },
  { name: 'a client headers timeout in words', values: { config: { clientHeadersTimeout: 'soon' } }, message: "at '/config/clientHeadersTimeout': 'soon' does not match pattern" },
  { name: 'a keep-alive timeout given as a number', values: { config: { keepAliveTimeout: 65 } }, message: "at '/config/keepAliveTimeout': got number, want string" },
  { name: 'a client idle timeout in words', values: { config: { clientIdleTimeout: 'never' } }, message: "at '/config/clientIdleTimeout': 'never' does not match pattern" },
  { name: 'a negative connection limit', values: { config: { maxConnections: -1 } }, message: "at '/config/maxConnections': minimum: got -1, want 0" },
  { name: 'a JWT max age in words', values: { auth: { maxAge: 'a day' } }, message: "at '/auth/maxAge': 'a day' does not match pattern" },
  { name: 'no profile at all', values: { profiles: null }, message: /profiles/ },
  { name: 'an unquoted "off" annotation (YAML 1.1 reads it as false)', values: { ingress: { annotations: { 'nginx.ingress.kubernetes.io/proxy-buffering': false } } }, message: 'proxy-buffering' },
  { name: 'a NetworkPolicy peer with a misspelled selector', values: { networkPolicy: { adminFrom: [{ namespaceSelecter: { matchLabels: { team: 'accounts' } } }] } }, message: "at '/networkPolicy/adminFrom/0': additional properties 'namespaceSelecter' not allowed" },
  { name: 'an empty NetworkPolicy peer', values: { networkPolicy: { adminFromMonitoring: [{}] } }, message: "at '/networkPolicy/adminFromMonitoring/0'" },
  { name: 'two token key sources', values: { auth: { jwksUrl: 'https://idp.example.com/certs', publicKey: '-----BEGIN PUBLIC KEY-----\nMCowBQ==\n-----END PUBLIC KEY-----\n' } }, message: 'auth.jwksUrl and auth.publicKey are both set', bySchema: false },
  { name: 'a grace period shorter than the drain', values: { terminationGracePeriodSeconds: 20, config: { drainTimeoutSeconds: 20 } }, message: 'terminationGracePeriodSeconds (20) must exceed config.drainTimeoutSeconds (20)', bySchema: false },
  { name: 'an autoscaler whose minimum exceeds its maximum', values: { autoscaling: { enabled: true, minReplicas: 5, maxReplicas: 2 } }, message: 'autoscaling.minReplicas (5) exceeds autoscaling.maxReplicas (2)', bySchema: false },
]

for (const { name, values, message, bySchema } of REJECTED) {
  void t.test(`rejects ${name}`, async (t) => {
    const rendered = await helm.template(values)
    t.not(rendered.code, 0, 'helm template fails')
    t.equal(rendered.stdout, '', 'and renders nothing')
    t.match(rendered.stderr, message)
    if (bySchema === false) return
    const lint = await helm.lint(values)
    t.not(lint.code, 0, 'helm lint fails')
    t.match(lint.stdout + lint.stderr, message)
  })
}

void t.test('the same values without the mistake render', async (t) => {
  for (const values of [{ replicaCount: 3 }, { networkPolicy: { adminFrom: [{ namespaceSelector: { matchLabels: { team: 'accounts' } } }, { ipBlock: { cidr: '10.1.0.0/16' } }] } }, { config: { spawnOnDemand: true, startTimeout: '90s', logLevel: 'debug' } }, { terminationGracePeriodSeconds: 21, config: { drainTimeoutSeconds: 20 } }, { config: { maxRequestHeaders: 16, clientHeadersTimeout: '5s', keepAliveTimeout: '65s', clientIdleTimeout: '0', maxConnections: 0 }, auth: { maxAge: '12h' } }]) {
    const rendered = await helm.template(values)
    t.equal(rendered.code, 0, `${JSON.stringify(values)} renders: ${rendered.stderr}`)
  }
})

void t.test('NOTES.txt: mint a token and reach the first workload', async (t) => {
  const notes = await helm.notes({})
  t.match(notes, `kubectl -n ${NAMESPACE} exec deploy/${FULLNAME} -- node dist/main.js token alice`)
  t.match(notes, `get secret ${FULLNAME} -o jsonpath='{.data.admin-token}'`)
  t.match(notes, 'curl -X PUT -H "Authorization: Bearer $ADMIN_TOKEN" http://127.0.0.1:9090/api/users/alice')
  t.match(notes, `port-forward svc/${FULLNAME} 9090:9090`)
  t.match(notes, 'curl -H "Authorization: Bearer $TOKEN" http://127.0.0.1:8080/')
  t.match(notes, 'X-User-ID header')
  t.match(notes, `curl --cookie "${DEFAULT_COOKIE_NAME}=$TOKEN"`, 'the cookie example uses the name podgate reads by default')
  t.match(notes, `the "${DEFAULT_COOKIE_NAME}" cookie never\n   reach the workload`, 'and says the workload never gets it')
  t.notMatch(notes, /\{\{|<no value>/, 'every placeholder was filled')
})

void t.test('NOTES.txt names the cookie auth.cookieName sets', async (t) => {
  const notes = await helm.notes({ auth: { cookieName: 'pg_token' } })
  t.match(notes, 'curl --cookie "pg_token=$TOKEN"')
  t.match(notes, 'the "pg_token" cookie never')
  t.notMatch(notes, `"${DEFAULT_COOKIE_NAME}"`)
})

void t.test('NOTES.txt follows the values: JWKS, existingSecret, ingress', async (t) => {
  const notes = await helm.notes({
    auth: { jwksUrl: 'https://idp.example.com/certs', userClaim: 'preferred_username' },
    existingSecret: { name: 'podgate-keys', adminTokenKey: 'admin' },
    ingress: { enabled: true, hosts: [{ host: 'apps.example.com', paths: [{ path: '/', pathType: 'Prefix' }] }], tls: [{ secretName: 'tls', hosts: ['apps.example.com'] }] },
  })
  t.notMatch(notes, 'node dist/main.js token', 'no minting without a shared secret')
  t.match(notes, 'the user id is read from the "preferred_username" claim')
  t.match(notes, "get secret podgate-keys -o jsonpath='{.data.admin}'")
  t.match(notes, 'curl -H "Authorization: Bearer $TOKEN" https://apps.example.com/')
  t.notMatch(notes, /\{\{|<no value>/)
})

void t.test('NOTES.txt for a routing-only gateway: no admin API, the namespaces it routes from', async (t) => {
  const notes = await helm.notes({ config: { provisioner: false, namespaces: ['team-a', 'team-b'] } })
  t.match(notes, 'routing-only gateway (config.provisioner: false): no admin API, no UserWorkloads')
  t.match(notes, 'in: team-a,team-b.')
  t.notMatch(notes, '/api/users', 'no admin API call')
  t.notMatch(notes, 'Spawn on demand')
  t.match(notes, 'curl -H "Authorization: Bearer $TOKEN" http://127.0.0.1:8080/', 'requests go through it as before')
  t.notMatch(notes, /\{\{|<no value>/)
  t.match(await helm.notes({ config: { provisioner: false } }), `in: ${NAMESPACE}.`, 'the release namespace when none is listed')
})
