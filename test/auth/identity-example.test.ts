// docs/identity.md's Node example, run as written against a real gateway: it greets the user
// podgate sends, and refuses a request without the header or with one signed for another request.
import { spawn } from 'node:child_process'
import { once } from 'node:events'
import { readFile } from 'node:fs/promises'
import { connect, createServer, type AddressInfo } from 'node:net'
import { setTimeout as sleep } from 'node:timers/promises'
import t from 'tap'
import { request } from 'undici'
import { createIdentitySigner } from '../../src/auth/identity-token.ts'
import { endpoint } from '../../src/discovery/source.ts'
import { startTestGateway } from '../support/gateway.ts'
import { identityKeyPem } from '../support/identity.ts'

const doc = await readFile(new URL('../../docs/identity.md', import.meta.url), 'utf8')
const example = /```js\n([\s\S]+?)```/.exec(doc)?.[1] ?? ''

/** A port the OS had free a moment ago: the example listens where PORT says. */
async function freePort (): Promise<number> {
  const server = createServer().listen(0, '127.0.0.1')
  await once(server, 'listening')
  const { port } = server.address() as AddressInfo
  await new Promise((resolve) => server.close(resolve))
  return port
}

function accepting (port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = connect(port, '127.0.0.1')
    socket.once('connect', () => { socket.destroy(); resolve(true) })
    socket.once('error', () => { resolve(false) })
  })
}

void t.test('the Node example verifies what podgate sends and refuses the rest', async (t) => {
  t.match(example, 'createRemoteJWKSet', 'the doc has the example')
  const dir = t.testdir({ 'identity.pem': identityKeyPem('EdDSA').privatePem, 'pod.mjs': example })
  const gw = await startTestGateway(t, { PODGATE_IDENTITY_KEY: `${dir}/identity.pem` })
  const port = await freePort()
  const pod = spawn(process.execPath, [`${dir}/pod.mjs`], {
    env: { PATH: process.env.PATH, JWKS_URL: `${gw.adminUrl}/.well-known/jwks.json`, USER: 'alice', PORT: String(port), HOST: '127.0.0.1' },
    stdio: ['ignore', 'ignore', 'inherit'],
  })
  t.teardown(async () => {
    if (pod.exitCode === null) {
      pod.kill()
      await once(pod, 'exit')
    }
  })
  let up = false
  for (let i = 0; i < 200 && !up && pod.exitCode === null; i++) {
    up = await accepting(port)
    if (!up) await sleep(25)
  }
  t.ok(up, 'the example listens')
  gw.local.set('alice', [endpoint('127.0.0.1', port)])

  const through = await request(`${gw.url}/notebooks/1?tab=2`, { headers: { authorization: `Bearer ${await gw.token('alice')}` } })
  t.equal(through.statusCode, 200)
  t.equal(await through.body.text(), 'hello alice\n')

  const direct = await request(`http://127.0.0.1:${port}/notebooks/1?tab=2`, { headers: { 'x-user-id': 'alice' } })
  t.equal(direct.statusCode, 401, 'no header: refused, whatever X-User-ID says')
  await direct.body.dump()

  // A header signed with the gateway's key for another request of alice's, presented on this one.
  const token = createIdentitySigner(gw.config.gateway.identity)?.token('alice', 'GET', '/other') ?? ''
  const replayed = await request(`http://127.0.0.1:${port}/notebooks/1?tab=2`, { headers: { 'x-podgate-identity': token } })
  t.equal(replayed.statusCode, 401)
  t.equal(await replayed.body.text(), 'signed for another request\n')
  const right = await request(`http://127.0.0.1:${port}/other`, { headers: { 'x-podgate-identity': token } })
  t.equal(right.statusCode, 200, 'the same token on its own request passes: the refusal above is the binding')
  await right.body.dump()
})
