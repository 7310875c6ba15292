// Certificates and keys of a throwaway test cluster: a CA, the API server's serving
// certificate for 127.0.0.1, client certificates (admin in system:masters, the controller
// manager), and the service-account signing key pair. X.509 issuing needs the openssl CLI
// (node:crypto only parses certificates); key pairs come from node:crypto.
import { execFile } from 'node:child_process'
import { generateKeyPairSync } from 'node:crypto'
import { readFile, writeFile } from 'node:fs/promises'
import { join } from 'node:path'

export interface ClientCertificate {
  readonly cert: string
  readonly key: string
  readonly certFile: string
  readonly keyFile: string
}

export interface ClusterPki {
  readonly caFile: string
  readonly caKeyFile: string
  readonly ca: string
  readonly servingCertFile: string
  readonly servingKeyFile: string
  readonly serviceAccountKeyFile: string
  readonly serviceAccountPublicKeyFile: string
  readonly admin: ClientCertificate
  readonly controllerManager: ClientCertificate
}

const DAYS = '2'

function openssl (args: readonly string[], cwd: string): Promise<void> {
  return new Promise((resolve, reject) => {
    execFile('openssl', [...args], { cwd, timeout: 30_000 }, (err, _stdout, stderr) => {
      if (err === null) { resolve(); return }
      const missing = (err as NodeJS.ErrnoException).code === 'ENOENT'
      reject(new Error(missing
        ? 'the openssl command is required to issue the test cluster\'s certificates (apt-get install openssl)'
        : `openssl ${args.slice(0, 2).join(' ')} failed: ${stderr.trim() || err.message}`))
    })
  })
}

async function issue (dir: string, name: string, subject: string, extensions: readonly string[]): Promise<ClientCertificate> {
  const keyFile = join(dir, `${name}.key`)
  const certFile = join(dir, `${name}.crt`)
  const extFile = join(dir, `${name}.ext`)
  await writeFile(extFile, extensions.join('\n') + '\n')
  await openssl(['req', '-new', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes',
    '-keyout', keyFile, '-subj', subject, '-out', join(dir, `${name}.csr`)], dir)
  await openssl(['x509', '-req', '-in', join(dir, `${name}.csr`), '-CA', 'ca.crt', '-CAkey', 'ca.key',
    '-CAcreateserial', '-days', DAYS, '-extfile', extFile, '-out', certFile], dir)
  return { cert: await readFile(certFile, 'utf8'), key: await readFile(keyFile, 'utf8'), certFile, keyFile }
}

/** Writes every file into `dir` (an empty, private directory) and returns their paths and contents. */
export async function createClusterPki (dir: string): Promise<ClusterPki> {
  await openssl(['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes',
    '-keyout', 'ca.key', '-out', 'ca.crt', '-days', DAYS, '-subj', '/CN=podgate-e2e-ca'], dir)
  const serving = await issue(dir, 'apiserver', '/CN=kube-apiserver', [
    'basicConstraints=critical,CA:FALSE',
    'keyUsage=critical,digitalSignature,keyEncipherment',
    'extendedKeyUsage=serverAuth',
    'subjectAltName=IP:127.0.0.1,DNS:localhost,DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc',
  ])
  const client = ['basicConstraints=critical,CA:FALSE', 'keyUsage=critical,digitalSignature', 'extendedKeyUsage=clientAuth']
  const admin = await issue(dir, 'admin', '/O=system:masters/CN=podgate-e2e-admin', client)
  const controllerManager = await issue(dir, 'controller-manager', '/CN=system:kube-controller-manager', client)

  const { privateKey, publicKey } = generateKeyPairSync('rsa', { modulusLength: 2048 })
  const serviceAccountKeyFile = join(dir, 'service-account.key')
  const serviceAccountPublicKeyFile = join(dir, 'service-account.pub')
  await writeFile(serviceAccountKeyFile, privateKey.export({ type: 'pkcs8', format: 'pem' }), { mode: 0o600 })
  await writeFile(serviceAccountPublicKeyFile, publicKey.export({ type: 'spki', format: 'pem' }))

  return {
    caFile: join(dir, 'ca.crt'),
    caKeyFile: join(dir, 'ca.key'),
    ca: await readFile(join(dir, 'ca.crt'), 'utf8'),
    servingCertFile: serving.certFile,
    servingKeyFile: serving.keyFile,
    serviceAccountKeyFile,
    serviceAccountPublicKeyFile,
    admin,
    controllerManager,
  }
}

/** A kubeconfig for one identity (client certificate or bearer token), with the CA inlined. */
export function kubeconfigYaml (options: { server: string, ca: string, user: string, cert?: string, key?: string, token?: string, namespace?: string }): string {
  const b64 = (text: string): string => Buffer.from(text).toString('base64')
  const user: Record<string, string> = {}
  if (options.cert !== undefined && options.key !== undefined) {
    user['client-certificate-data'] = b64(options.cert)
    user['client-key-data'] = b64(options.key)
  }
  if (options.token !== undefined) user.token = options.token
  return JSON.stringify({
    apiVersion: 'v1',
    kind: 'Config',
    clusters: [{ name: 'e2e', cluster: { server: options.server, 'certificate-authority-data': b64(options.ca) } }],
    users: [{ name: options.user, user }],
    contexts: [{ name: 'e2e', context: { cluster: 'e2e', user: options.user, ...(options.namespace === undefined ? {} : { namespace: options.namespace }) } }],
    'current-context': 'e2e',
  }, null, 2) + '\n'
}
