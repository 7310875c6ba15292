// Profiles: the accepted shapes, the default choice, and a table of bad files, each refused
// with a ConfigError that names PODGATE_PROFILES and the field path.
import { mkdtemp, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import t from 'tap'
import { ConfigError } from '../../src/errors.ts'
import { BUILTIN_PROFILE, DEFAULT_WORKLOAD_IMAGE, loadProfiles, parseProfiles } from '../../src/controller/profiles.ts'

void t.test('without a file, the built-in profile runs podgate\'s image with the built-in backend', (t) => {
  const profiles = loadProfiles(undefined)
  t.equal(profiles.default, BUILTIN_PROFILE)
  t.same(profiles.names, ['default'])
  t.equal(profiles.default.image, DEFAULT_WORKLOAD_IMAGE)
  t.same(profiles.default.command, ['node', 'dist/local/backend.js', '--user', '$(USER)', '--port', '8080', '--host', '0.0.0.0'])
  t.equal(profiles.default.port, 8080)
  t.equal(profiles.default.readinessPath, '/healthz', 'the built-in backend answers /healthz')
  t.equal(profiles.get(undefined), profiles.default)
  t.equal(profiles.get(''), profiles.default)
  t.equal(profiles.get('other'), undefined)
  t.end()
})

void t.test('the Helm chart\'s shape (name → profile) with every field', (t) => {
  const profiles = parseProfiles(`
default:
  image: nginxinc/nginx-unprivileged:1.27-alpine
  port: 8080
  resources:
    requests: { cpu: 50m, memory: 64Mi }
    limits: { memory: 256Mi, cpu: 1 }
gpu:
  image: registry.example.com/workspace:2.3
  imagePullPolicy: IfNotPresent
  command: [/bin/workspace]
  args: ["--listen", ":9000"]
  port: 9000
  env:
    - { name: MODE, value: gpu }
    - { name: EMPTY }
  readinessPath: /ready
  storage: { size: 10Gi, storageClassName: fast-ssd, mountPath: /home/user, fsGroup: 1000 }
`)
  t.same(profiles.names, ['default', 'gpu'])
  t.equal(profiles.default.name, 'default', 'the profile named default is the default')
  t.same(profiles.default.resources, { requests: { cpu: '50m', memory: '64Mi' }, limits: { memory: '256Mi', cpu: '1' } }, 'a bare number is a quantity')
  const gpu = profiles.get('gpu')
  t.same(gpu, {
    name: 'gpu',
    image: 'registry.example.com/workspace:2.3',
    imagePullPolicy: 'IfNotPresent',
    port: 9000,
    command: ['/bin/workspace'],
    args: ['--listen', ':9000'],
    env: [{ name: 'MODE', value: 'gpu' }, { name: 'EMPTY', value: '' }],
    readinessPath: '/ready',
    storage: { size: '10Gi', storageClassName: 'fast-ssd', keepOnDelete: true, mountPath: '/home/user', fsGroup: 1000 },
  })
  t.ok(Object.isFrozen(gpu) && Object.isFrozen(gpu?.env), 'profiles are immutable')
  t.end()
})

void t.test('a list under profiles:, with the default marked', (t) => {
  const profiles = parseProfiles(`
profiles:
  - name: small
    image: app:1
  - name: big
    image: app:1
    default: true
    storage: { size: 1Gi, keepOnDelete: false }
`)
  t.same(profiles.names, ['small', 'big'])
  t.equal(profiles.default.name, 'big')
  t.equal(profiles.default.port, 8080, 'the port defaults to 8080')
  t.same(profiles.default.storage, { size: '1Gi', keepOnDelete: false, mountPath: '/data' })
  t.equal(parseProfiles('first:\n  image: a:1\nsecond:\n  image: b:1\n').default.name, 'first', 'no default marked and none named default: the first')
  t.equal(parseProfiles('profiles:\n  one:\n    image: a:1\n').default.name, 'one', 'a mapping under profiles: too')
  t.end()
})

const BAD: Array<[string, string, RegExp]> = [
  ['bad storage size in a list', 'profiles:\n  - { name: a, image: x:1 }\n  - { name: b, image: x:1, storage: { size: ten } }\n', /^PODGATE_PROFILES: profiles\[1\]\.storage\.size: expected a quantity like 10Gi/],
  ['bad storage size in a mapping', 'a:\n  image: x:1\n  storage: { size: 10GB }\n', /^PODGATE_PROFILES: profiles\.a\.storage\.size: expected a quantity/],
  ['zero storage', 'a:\n  image: x:1\n  storage: { size: "0" }\n', /profiles\.a\.storage\.size: must be more than zero/],
  ['storage without size', 'a:\n  image: x:1\n  storage: { mountPath: /data }\n', /profiles\.a\.storage\.size: required/],
  ['missing image', 'a:\n  port: 80\n', /profiles\.a\.image: expected an image reference/],
  ['image with a space', 'a:\n  image: "x y"\n', /profiles\.a\.image/],
  ['port out of range', 'a:\n  image: x:1\n  port: 70000\n', /profiles\.a\.port: expected a port number from 1 to 65535, got number 70000/],
  ['port as a string', 'a:\n  image: x:1\n  port: "8080"\n', /profiles\.a\.port: .*got "8080"/],
  ['unknown field', 'a:\n  image: x:1\n  replicas: 2\n', /profiles\.a\.replicas: unknown field; expected one of image, imagePullPolicy, port/],
  ['volume instead of storage', 'a:\n  image: x:1\n  volume: { size: 1Gi }\n', /profiles\.a\.volume: unknown field \(did you mean storage\?\)/],
  ['env not a list', 'a:\n  image: x:1\n  env: { A: b }\n', /profiles\.a\.env: expected a list of \{name, value\}/],
  ['env value a number', 'a:\n  image: x:1\n  env: [{ name: A, value: 1 }]\n', /profiles\.a\.env\[0\]\.value: expected a string \(quote numbers and booleans\)/],
  ['env sets USER', 'a:\n  image: x:1\n  env: [{ name: USER, value: root }]\n', /profiles\.a\.env\[0\]\.name: USER is set by podgate/],
  ['duplicate env', 'a:\n  image: x:1\n  env: [{ name: A, value: "1" }, { name: A, value: "2" }]\n', /profiles\.a\.env\[1\]\.name: duplicate variable A/],
  ['bad env name', 'a:\n  image: x:1\n  env: [{ name: "1=2", value: x }]\n', /profiles\.a\.env\[0\]\.name/],
  ['command not strings', 'a:\n  image: x:1\n  command: [run, 8080]\n', /profiles\.a\.command\[1\]: expected a string/],
  ['bad quantity', 'a:\n  image: x:1\n  resources: { limits: { memory: lots } }\n', /profiles\.a\.resources\.limits\.memory: expected a quantity/],
  ['unknown resources section', 'a:\n  image: x:1\n  resources: { request: { cpu: 1 } }\n', /profiles\.a\.resources\.request: unknown field/],
  ['bad pull policy', 'a:\n  image: x:1\n  imagePullPolicy: Sometimes\n', /profiles\.a\.imagePullPolicy: expected one of Always, IfNotPresent, Never/],
  ['keepOnDelete not boolean', 'a:\n  image: x:1\n  storage: { size: 1Gi, keepOnDelete: "yes" }\n', /profiles\.a\.storage\.keepOnDelete: expected true or false/],
  ['relative mountPath', 'a:\n  image: x:1\n  storage: { size: 1Gi, mountPath: data }\n', /profiles\.a\.storage\.mountPath: expected an absolute path/],
  ['bad storage class', 'a:\n  image: x:1\n  storage: { size: 1Gi, storageClassName: Fast_SSD }\n', /profiles\.a\.storage\.storageClassName/],
  ['readinessPath without slash', 'a:\n  image: x:1\n  readinessPath: healthz\n', /profiles\.a\.readinessPath: expected an HTTP path/],
  ['bad profile name', 'Big:\n  image: x:1\n', /profiles\.Big: a profile name must be/],
  ['list item without name', 'profiles:\n  - image: x:1\n', /profiles\[0\]\.name: expected a profile name/],
  ['duplicate names in a list', 'profiles:\n  - { name: a, image: x:1 }\n  - { name: a, image: y:1 }\n', /profiles\[1\]\.name: duplicate profile name "a"/],
  ['two defaults', 'a: { image: x:1, default: true }\nb: { image: x:1, default: true }\n', /more than one profile is marked default: a, b/],
  ['a profile that is a string', 'a: nginx\n', /profiles\.a: expected a mapping \(a profile\), got "nginx"/],
  ['empty file', '', /defines no profiles/],
  ['a scalar document', '42\n', /expected a mapping of profile name → profile, got number 42/],
  ['invalid YAML', 'a:\n  image: [x\n', /is not valid YAML/],
  ['duplicate keys', 'a:\n  image: x:1\n  image: y:1\n', /is not valid YAML/],
]

void t.test('bad profile files stop start-up with the field path', (t) => {
  for (const [what, text, expected] of BAD) {
    let caught: unknown
    try {
      parseProfiles(text, 'profiles.yaml')
    } catch (err) {
      caught = err
    }
    t.ok(caught instanceof ConfigError, `${what}: a ConfigError`)
    t.equal((caught as ConfigError).variable, 'PODGATE_PROFILES', `${what}: names the variable`)
    t.match((caught as Error).message, expected, what)
    t.notMatch((caught as Error).message, /\n/, `${what}: one line`)
  }
  t.end()
})

void t.test('loadProfiles reads the file and reports an unreadable one', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'podgate-profiles-'))
  t.teardown(() => rm(dir, { recursive: true, force: true }))
  const file = join(dir, 'profiles.yaml')
  await writeFile(file, 'web:\n  image: web:2\n  port: 3000\n')
  const profiles = loadProfiles(file)
  t.equal(profiles.default.name, 'web')
  t.equal(profiles.default.port, 3000)
  t.throws(() => loadProfiles(join(dir, 'missing.yaml')), { name: 'ConfigError', message: /^PODGATE_PROFILES: cannot read .*missing\.yaml \(ENOENT\)$/ })
  await writeFile(file, 'web:\n  image: web:2\n  port: 0\n')
  t.throws(() => loadProfiles(file), { message: /^PODGATE_PROFILES: profiles\.web\.port:/ })
})
