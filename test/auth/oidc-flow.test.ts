// The sealed flow cookie: it opens with the key it was sealed with, until it expires, and
// not at all once altered or under another key; it reveals nothing of what it carries.
import t from 'tap'
import { flowCookieName, flowKey, openFlow, sealFlow, type LoginFlow } from '../../src/auth/oidc-flow.ts'
import { testSecret } from '../support/keys.ts'

const FLOW: LoginFlow = {
  state: 'S'.repeat(43),
  nonce: 'nonce-value',
  codeVerifier: 'verifier-value-that-is-long-enough-0123456789',
  returnTo: '/lab',
  redirectUri: 'https://podgate.example/.podgate/callback',
}
const NOW = Date.UTC(2026, 0, 1)

void t.test('seals and opens', async (t) => {
  const key = flowKey(testSecret())
  const sealed = await sealFlow(FLOW, key, NOW)
  t.match(sealed, /^[\w-]+\.\.[\w-]+\.[\w-]+\.[\w-]+$/, 'a compact JWE with no encrypted key (dir)')
  t.notOk(sealed.includes(Buffer.from('verifier-value').toString('base64url').slice(0, 12)), 'the verifier is not readable')
  t.same(await openFlow(sealed, key, NOW + 599_000), FLOW, 'opens within 10 minutes')
  t.equal(await openFlow(sealed, key, NOW + 601_000), undefined, 'not after')
  t.equal(await openFlow(sealed, flowKey(new TextEncoder().encode('another-secret-of-thirty-two-bytes!!')), NOW), undefined, 'not under another key')
  t.equal(await openFlow(`${sealed.slice(0, -2)}AA`, key, NOW), undefined, 'not once altered')
  t.equal(await openFlow('garbage', key, NOW), undefined)
  t.not(Buffer.from(key).toString('hex'), Buffer.from(testSecret()).toString('hex'), 'the key is derived, not the session secret')
})

void t.test('cookie names come only from states podgate could have made', (t) => {
  t.equal(flowCookieName('S'.repeat(43)), `podgate-oidc-${'S'.repeat(43)}`)
  for (const state of [null, undefined, '', 'short', 'has space in it, long enough', 'semi;colon-and-long-enough', 'x'.repeat(129)]) {
    t.equal(flowCookieName(state), undefined, JSON.stringify(state))
  }
  t.end()
})
