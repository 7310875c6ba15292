// A real OpenID Connect provider (oidc-provider) on 127.0.0.1, port 0, for the login tests:
// users with passwords, a minimal login form at /interaction/<uid> that tests fill in with plain
// HTTP requests (no consent step: the grant is made for the one first-party client), RP-initiated
// logout, and one confidential client for podgate, registered once the gateway's URL is known.
import { generateKeyPairSync, randomBytes } from 'node:crypto'
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http'
import type { AddressInfo } from 'node:net'
import Provider, { type Configuration } from 'oidc-provider'
import { firstPartyGrant, memoryAdapter } from '../../src/local/oidc-memory-adapter.ts'

interface Teardown { teardown (fn: () => unknown): void }

interface TestUser {
  readonly password: string
  readonly claims: Readonly<Record<string, string | boolean>>
}

/** The provider's accounts: alice and bob log in as themselves; carol's username is no DNS-1123 label. */
export const PROVIDER_USERS: Readonly<Record<string, TestUser>> = Object.freeze({
  alice: { password: 'alice-password', claims: { preferred_username: 'alice', email: 'alice@example.com', email_verified: true, name: 'Alice', team: 'team-a' } },
  bob: { password: 'bob-password', claims: { preferred_username: 'bob', email: 'bob@example.com', email_verified: true, name: 'Bob', team: 'team-b' } },
  carol: { password: 'carol-password', claims: { preferred_username: 'Carol.Smith', email: 'carol@example.com', email_verified: true, name: 'Carol' } },
})

export interface TestProviderOptions {
  /**
   * Profile claims in the ID token too (what Keycloak does); false keeps them to the UserInfo
   * endpoint (oidc-provider's default for the code flow).
   */
  readonly claimsInIdToken?: boolean
}

export interface TestProvider {
  /** The issuer identifier, `http://127.0.0.1:<port>`. */
  readonly issuer: string
  readonly clientId: string
  readonly clientSecret: string
  /**
   * Registers podgate's client for gateways at `origins` (callback `<origin>/.podgate/callback`,
   * post-logout `<origin>/`). Until then every request to the provider is 503.
   */
  register (origins: readonly string[]): void
  /** Logins that went through the password form, so a test tells a silent re-login from a new one. */
  readonly passwordLogins: number
}

const CLIENT_ID = 'podgate'

export async function startTestProvider (t: Teardown, options: TestProviderOptions = {}): Promise<TestProvider> {
  let provider: Provider | undefined
  let passwordLogins = 0
  const server = createServer((req, res) => {
    if (provider === undefined) {
      res.writeHead(503, { 'content-type': 'text/plain' }).end('provider not configured yet')
      return
    }
    const active = provider
    const interaction = /^\/interaction\/([A-Za-z0-9_-]+)(\/login)?$/.exec(req.url ?? '')
    if (interaction === null) {
      void active.callback()(req, res)
      return
    }
    const login = interaction[2] !== undefined
    const handled = login ? submitLogin(active, req, res, () => { passwordLogins++ }) : showLogin(active, req, res)
    handled.catch((err: unknown) => {
      if (!res.headersSent) res.writeHead(500, { 'content-type': 'text/plain' })
      res.end(String(err))
    })
  })
  await new Promise<void>((resolve) => { server.listen(0, '127.0.0.1', resolve) })
  t.teardown(() => new Promise<void>((resolve) => {
    server.close(() => { resolve() })
    server.closeAllConnections()
  }))
  const issuer = `http://127.0.0.1:${(server.address() as AddressInfo).port}`
  const clientSecret = randomBytes(24).toString('base64url')
  return {
    issuer,
    clientId: CLIENT_ID,
    clientSecret,
    register: (origins) => {
      provider = new Provider(issuer, configuration(clientSecret, origins, options.claimsInIdToken ?? true))
    },
    get passwordLogins () { return passwordLogins },
  }
}

function configuration (clientSecret: string, origins: readonly string[], claimsInIdToken: boolean): Configuration {
  const signing = generateKeyPairSync('rsa', { modulusLength: 2048 }).privateKey.export({ format: 'jwk' })
  return {
    clients: [{
      client_id: CLIENT_ID,
      client_secret: clientSecret,
      redirect_uris: origins.map((origin) => `${origin}/.podgate/callback`),
      post_logout_redirect_uris: origins.map((origin) => `${origin}/`),
      grant_types: ['authorization_code'],
      response_types: ['code'],
      token_endpoint_auth_method: 'client_secret_basic',
    }],
    adapter: memoryAdapter(),
    jwks: { keys: [{ ...signing, kid: 'test-signing-key', alg: 'RS256', use: 'sig' }] },
    cookies: { keys: [randomBytes(32).toString('base64url')] },
    claims: { openid: ['sub'], profile: ['preferred_username', 'name', 'team'], email: ['email', 'email_verified'] },
    conformIdTokenClaims: !claimsInIdToken,
    findAccount: (_ctx, sub) => {
      const user = Object.hasOwn(PROVIDER_USERS, sub) ? PROVIDER_USERS[sub] : undefined
      if (user === undefined) return undefined
      return { accountId: sub, claims: () => ({ sub, ...user.claims }) }
    },
    loadExistingGrant: firstPartyGrant,
    features: {
      devInteractions: { enabled: false },
      rpInitiatedLogout: {
        enabled: true,
        logoutSource: (ctx, form) => {
          ctx.body = `<!DOCTYPE html><html><body>${form}<button type="submit" form="op.logoutForm" name="logout" value="yes">Sign out</button></body></html>`
        },
      },
    },
    interactions: { url: (_ctx, interaction) => `/interaction/${interaction.uid}` },
    renderError: (ctx, out) => {
      ctx.type = 'json'
      ctx.body = out
    },
    ttl: { AccessToken: 600, AuthorizationCode: 60, IdToken: 600, Interaction: 600, Session: 3600, Grant: 3600 },
  }
}


async function showLogin (provider: Provider, req: IncomingMessage, res: ServerResponse): Promise<void> {
  const details = await provider.interactionDetails(req, res)
  if (details.prompt.name !== 'login') throw new Error(`unexpected prompt ${details.prompt.name}`)
  const body = `<!DOCTYPE html><html><body><form method="post" action="/interaction/${details.uid}/login">
<input name="login"><input name="password" type="password"><button>Sign in</button></form></body></html>`
  res.writeHead(200, { 'content-type': 'text/html; charset=utf-8' }).end(body)
}

async function submitLogin (provider: Provider, req: IncomingMessage, res: ServerResponse, counted: () => void): Promise<void> {
  const form = new URLSearchParams(await readBody(req))
  const login = form.get('login') ?? ''
  const user = Object.hasOwn(PROVIDER_USERS, login) ? PROVIDER_USERS[login] : undefined
  if (user === undefined || form.get('password') !== user.password) {
    res.writeHead(401, { 'content-type': 'text/plain' }).end('wrong user name or password')
    return
  }
  counted()
  await provider.interactionFinished(req, res, { login: { accountId: login } }, { mergeWithLastSubmission: false })
}

async function readBody (req: IncomingMessage): Promise<string> {
  const chunks: Buffer[] = []
  for await (const chunk of req) chunks.push(chunk as Buffer)
  return Buffer.concat(chunks).toString('utf8')
}
