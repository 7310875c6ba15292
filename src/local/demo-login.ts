// `podgate demo --login`: a real OpenID Connect provider (the oidc-provider package, a
// devDependency) on 127.0.0.1 with the demo's users and one password, so a person signs in
// through podgate's own login in a browser. Loaded only with --login (a dynamic import).
import { generateKeyPairSync, randomBytes } from 'node:crypto'
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http'
import { listenOn } from '../listen.ts'
import Provider, { type Configuration } from 'oidc-provider'
import { firstPartyGrant, memoryAdapter } from './oidc-memory-adapter.ts'

/** Who can sign in: alice and bob have workspaces, carol has none until spawn on demand or the admin API makes one. */
export const DEMO_LOGIN_USERS = ['alice', 'bob', 'carol'] as const
const CLIENT_ID = 'podgate-demo'
const MAX_FORM_BYTES = 4096

export interface DemoProviderOptions {
  /** The one password every demo user signs in with; undefined: a random one. */
  readonly password?: string | undefined
  readonly host?: string
  /** 0 (the default) picks a free port. */
  readonly port?: number
}

export interface DemoProvider {
  /** `http://127.0.0.1:<port>`. */
  readonly issuer: string
  readonly clientId: string
  readonly clientSecret: string
  readonly password: string
  readonly users: readonly string[]
  /** Registers podgate as the client for gateways at `origins`; until then the provider answers 503. */
  register (origins: readonly string[]): void
  close (): Promise<void>
}

export async function startDemoProvider (options: DemoProviderOptions = {}): Promise<DemoProvider> {
  const { host = '127.0.0.1', port = 0 } = options
  const password = options.password ?? randomBytes(9).toString('base64url')
  let provider: Provider | undefined
  const server = createServer((req, res) => {
    if (provider === undefined) {
      res.writeHead(503, { 'content-type': 'text/plain' }).end('the demo provider is not ready yet')
      return
    }
    const active = provider
    const interaction = /^\/interaction\/([A-Za-z0-9_-]+)(\/login)?$/.exec(req.url ?? '')
    if (interaction === null) {
      void active.callback()(req, res)
      return
    }
    const handled = interaction[2] === undefined ? showLogin(active, req, res, '') : submitLogin(active, req, res, password)
    handled.catch((err: unknown) => {
      if (!res.headersSent) res.writeHead(400, { 'content-type': 'text/plain; charset=utf-8' })
      res.end(`sign-in failed: ${err instanceof Error ? err.message : String(err)}\n`)
    })
  })
  const address = await listenOn(server, { port, host })
  const issuer = `http://${host.includes(':') ? `[${host}]` : host}:${address.port}`
  const clientSecret = randomBytes(24).toString('base64url')
  let closing: Promise<void> | undefined
  return {
    issuer,
    clientId: CLIENT_ID,
    clientSecret,
    password,
    users: DEMO_LOGIN_USERS,
    register: (origins) => {
      provider = new Provider(issuer, configuration(clientSecret, origins))
    },
    close: () => {
      closing ??= new Promise<void>((resolve) => {
        server.close(() => { resolve() })
        server.closeAllConnections()
      })
      return closing
    },
  }
}

function configuration (clientSecret: string, origins: readonly string[]): Configuration {
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
    jwks: { keys: [{ ...signing, kid: 'demo-signing-key', alg: 'RS256', use: 'sig' }] },
    cookies: { keys: [randomBytes(32).toString('base64url')] },
    claims: { openid: ['sub'], profile: ['preferred_username', 'name'], email: ['email', 'email_verified'] },
    // The profile claims go into the ID token, where podgate reads preferred_username.
    conformIdTokenClaims: false,
    findAccount: (_ctx, sub) => {
      if (!isDemoUser(sub)) return undefined
      return { accountId: sub, claims: () => ({ sub, preferred_username: sub, name: sub, email: `${sub}@demo.invalid`, email_verified: true }) }
    },
    loadExistingGrant: firstPartyGrant,
    features: {
      devInteractions: { enabled: false },
      rpInitiatedLogout: {
        enabled: true,
        logoutSource: (ctx, form) => {
          ctx.body = page('Sign out', `${form}<p>Sign out of the demo provider too?</p><button type="submit" form="op.logoutForm" name="logout" value="yes">Sign out</button>`)
        },
      },
    },
    interactions: { url: (_ctx, interaction) => `/interaction/${interaction.uid}` },
    ttl: { AccessToken: 600, AuthorizationCode: 60, IdToken: 600, Interaction: 600, Session: 8 * 3600, Grant: 8 * 3600 },
  }
}

function isDemoUser (name: string): boolean {
  return (DEMO_LOGIN_USERS as readonly string[]).includes(name)
}

async function showLogin (provider: Provider, req: IncomingMessage, res: ServerResponse, error: string): Promise<void> {
  const details = await provider.interactionDetails(req, res)
  if (details.prompt.name !== 'login') throw new Error(`unexpected prompt ${details.prompt.name}`)
  const body = page('Sign in', `<h1>podgate demo: sign in</h1>
${error === '' ? '' : `<p role="alert">${error}</p>`}
<form method="post" action="/interaction/${details.uid}/login">
<p><label>User <input name="login" autocomplete="username" placeholder="${DEMO_LOGIN_USERS.join(', ')}" autofocus></label></p>
<p><label>Password <input name="password" type="password" autocomplete="current-password"></label></p>
<p><button type="submit">Sign in</button></p>
</form>
<p>Users: ${DEMO_LOGIN_USERS.join(', ')}; the password is printed by <code>podgate demo --login</code>.</p>`)
  res.writeHead(error === '' ? 200 : 401, { 'content-type': 'text/html; charset=utf-8', 'cache-control': 'no-store' }).end(body)
}

async function submitLogin (provider: Provider, req: IncomingMessage, res: ServerResponse, password: string): Promise<void> {
  const form = new URLSearchParams(await readBody(req))
  const login = form.get('login')?.trim() ?? ''
  if (!isDemoUser(login) || form.get('password') !== password) {
    await showLogin(provider, req, res, 'Wrong user or password.')
    return
  }
  await provider.interactionFinished(req, res, { login: { accountId: login } }, { mergeWithLastSubmission: false })
}

async function readBody (req: IncomingMessage): Promise<string> {
  const chunks: Buffer[] = []
  let size = 0
  for await (const chunk of req) {
    size += (chunk as Buffer).length
    if (size > MAX_FORM_BYTES) throw new Error('form too large')
    chunks.push(chunk as Buffer)
  }
  return Buffer.concat(chunks).toString('utf8')
}

function page (title: string, body: string): string {
  return `<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><title>${title} · podgate demo</title></head><body>${body}</body></html>`
}
