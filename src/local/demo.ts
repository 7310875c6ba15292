// `podgate demo` (npm start): the real gateway and provisioner in front of per-user backend
// processes on 127.0.0.1, with tokens minted on the spot and curl lines to paste.
import { randomBytes } from 'node:crypto'
import { startPodgate } from '../app.ts'
import { mintToken } from '../auth/mint.ts'
import { createCredentialVerifier } from '../auth/credential-verifier.ts'
import { checkOidcConfig, DEFAULT_OIDC_SCOPES, DEFAULT_OIDC_SESSION_TTL_S, DEFAULT_OIDC_USER_CLAIM } from '../auth/oidc-config.ts'
import { followRevocations, RevocationMarks } from '../auth/revocations.ts'
import type { Config, Env } from '../config.ts'
import { LocalEndpointSource } from './endpoint-source.ts'
import { ConfigError } from '../errors.ts'
import { LocalDriver, type LocalDriverOptions } from './driver.ts'
import { componentLogger, type Logger } from '../log.ts'
import { Metrics } from '../metrics.ts'
import { createProvisionerHooks } from '../workloads/gateway-plugin.ts'
import { LocalWorkloads } from './workloads.ts'
import type { SpawnerOptions } from '../workloads/spawner.ts'
import type { DemoProvider, startDemoProvider } from './demo-login.ts'

export const DEMO_USERS = ['alice', 'bob'] as const
const TOKEN_TTL_SECONDS = 12 * 60 * 60
/**
 * How much longer than PODGATE_BROWSER_GRACE a backend started after the demo is up takes to
 * become ready (like a pod pulling its image), so that a browser sees the starting page first.
 * alice and bob are ready when the instructions are printed.
 */
export const DEMO_SLOW_START_EXTRA_MS = 2_000

export interface DemoOptions {
  /** Loaded with `loadConfig(env, { requireKey: false })`: the demo brings its own key. */
  readonly config: Config
  readonly env: Env
  readonly logger: Logger
  readonly out: NodeJS.WritableStream
  /** Overrides for the local driver (tests shorten its timeouts). */
  readonly driver?: Partial<Omit<LocalDriverOptions, 'source' | 'logger'>>
  /** Overrides for spawn on demand (tests shorten the browser grace period). */
  readonly spawner?: Pick<SpawnerOptions, 'browserGraceMs'>
  /** Time between idle sweeps when PODGATE_IDLE_TIMEOUT is set. */
  readonly cullIntervalMs?: number
  /** `--login`: a local OpenID provider and podgate's own login in front of the workspaces. */
  readonly login?: boolean
}

/** What `--login` started: where the provider is and the password every demo user signs in with. */
export interface DemoLogin {
  readonly issuer: string
  readonly password: string
  readonly users: readonly string[]
}

export interface RunningDemo {
  readonly gatewayUrl: string
  readonly adminUrl: string
  readonly tokens: Readonly<Record<typeof DEMO_USERS[number], string>>
  /** PODGATE_ADMIN_TOKEN, or the one generated for this run. */
  readonly adminToken: string
  readonly workloads: LocalWorkloads
  /** Set with `login`. */
  readonly login: DemoLogin | undefined
  /** Drains the gateway, then stops every backend process (and the provider); idempotent. */
  close (): Promise<void>
}

export async function runDemo (options: DemoOptions): Promise<RunningDemo> {
  const { env, logger, out } = options
  // The local driver has no namespaces, so no tenant could ever match.
  if (options.config.auth.tenantClaim !== undefined) throw new ConfigError('PODGATE_TENANT_CLAIM', 'podgate demo has no namespaces, so no tenant could ever match: unset it for the demo')
  const provider = options.login === true ? await startLoginProvider(options.config) : undefined
  const plainConfig = demoConfig(options.config, env)
  let config: Config
  try {
    config = provider === undefined ? plainConfig : withLogin(plainConfig, provider)
  } catch (err) {
    await provider?.close()
    throw err
  }
  if (config.auth.key.kind !== 'secret') throw new Error('unreachable: demoConfig always yields a shared secret')
  const secret = config.auth.key.secret
  const metrics = new Metrics()
  const source = new LocalEndpointSource()
  const slowStartMs = config.gateway.browserGraceMs + DEMO_SLOW_START_EXTRA_MS
  const driver = new LocalDriver({
    ...options.driver,
    env: { READY_DELAY_MS: String(slowStartMs), READY_AT_ONCE: DEMO_USERS.join(','), ...options.driver?.env },
    source,
    logger: componentLogger(logger, 'local-driver'),
  })
  const workloads = new LocalWorkloads({ driver, source, logger: componentLogger(logger, 'workloads') })
  const revocations = new RevocationMarks()
  followRevocations(workloads, revocations)
  const adminToken = config.adminToken ?? randomBytes(24).toString('base64url')
  const hooks = createProvisionerHooks({
    config, workloads, source, logger, metrics, adminToken, spawner: options.spawner, cullIntervalMs: options.cullIntervalMs,
  })
  const stopProvisioner = async (): Promise<void> => {
    await hooks.close()
    workloads.close()
  }
  const stopDriver = async (): Promise<void> => {
    await driver.close()
    await provider?.close()
  }

  let started: Awaited<ReturnType<typeof startPodgate>> | undefined
  try {
    // Ports first: a taken port stops the demo before any backend process exists. A failed
    // start closes what it was given (the verifier, the source) and what it opened.
    started = await startPodgate({
      config,
      source,
      verifier: createCredentialVerifier(config, { metrics, logger }),
      logger,
      metrics,
      revocations,
      ...hooks.gateway,
    })
    provider?.register(loginOrigins(started.gatewayUrl))
    await Promise.all(DEMO_USERS.map((user) => workloads.put(user, {})))
    const endpoints = await Promise.all(DEMO_USERS.map((user) => driver.ensureUser(user)))
    await hooks.culling(true)
    const mint = (user: string): Promise<string> => mintToken({
      secret, user, ttlSeconds: TOKEN_TTL_SECONDS, claim: config.auth.userClaim, issuer: config.auth.issuer?.[0], audience: config.auth.audience?.[0],
    })
    const tokens = { alice: await mint('alice'), bob: await mint('bob') }
    out.write(instructions({
      gatewayUrl: started.gatewayUrl,
      adminUrl: started.adminUrl,
      cookieName: config.auth.cookieName,
      tokens: { ...tokens, carol: await mint('carol') },
      backends: DEMO_USERS.map((user, i) => ({ user, origin: endpoints[i]?.origin ?? '', pid: driver.status(user)?.pid })),
      secretFromEnv: isSet(env.PODGATE_JWT_SECRET),
      adminToken,
      adminTokenFromEnv: config.adminToken !== undefined,
      spawnOnDemand: config.gateway.spawnOnDemand,
      idleTimeoutMs: config.idleTimeoutMs,
      slowStartMs,
      login: provider === undefined ? undefined : { issuer: provider.issuer, password: provider.password },
    }))
    const running = started
    let closing: Promise<void> | undefined
    return {
      gatewayUrl: running.gatewayUrl,
      adminUrl: running.adminUrl,
      tokens,
      adminToken,
      workloads,
      login: provider === undefined ? undefined : { issuer: provider.issuer, password: provider.password, users: provider.users },
      close: () => {
        closing ??= stopProvisioner().then(() => running.close()).finally(stopDriver)
        return closing
      },
    }
  } catch (err) {
    await stopProvisioner()
    await started?.close().catch((closeErr: unknown) => { logger.error({ err: closeErr }, 'closing the demo gateway failed') })
    await stopDriver()
    throw err
  }
}

/** Starts the demo's OpenID provider; oidc-provider is a devDependency, so a one-line error when it is missing. */
async function startLoginProvider (config: Config): Promise<DemoProvider> {
  if (config.auth.oidc !== undefined) throw new ConfigError('PODGATE_OIDC_ISSUER', 'podgate demo --login brings its own provider: unset PODGATE_OIDC_* for the demo')
  if (config.gateway.signIn !== undefined) throw new ConfigError('PODGATE_SIGNIN_URL', 'podgate demo --login signs people in itself: unset PODGATE_SIGNIN_URL for the demo')
  let start: typeof startDemoProvider
  try {
    start = (await import('./demo-login.ts')).startDemoProvider
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ERR_MODULE_NOT_FOUND' && String(err).includes('oidc-provider')) {
      throw new Error('demo --login needs the oidc-provider package (a devDependency): run npm ci in the podgate checkout', { cause: err })
    }
    throw err
  }
  return await start({ host: '127.0.0.1' })
}

/** `config` with podgate's own login against the demo provider, held to the same checks as PODGATE_OIDC_*. */
function withLogin (config: Config, provider: DemoProvider): Config {
  const auth = Object.freeze({
    ...config.auth,
    oidc: Object.freeze({
      issuer: new URL(provider.issuer),
      clientId: provider.clientId,
      clientSecret: provider.clientSecret,
      scopes: DEFAULT_OIDC_SCOPES,
      userClaim: DEFAULT_OIDC_USER_CLAIM,
      // Derived from each request, so http://localhost:<port> works as well as 127.0.0.1.
      redirectUrl: undefined,
      sessionTtlS: DEFAULT_OIDC_SESSION_TTL_S,
    }),
  })
  checkOidcConfig(auth)
  return Object.freeze({ ...config, auth })
}

/** The gateway origins the provider accepts callbacks for: the printed one, and localhost for a loopback gateway. */
function loginOrigins (gatewayUrl: string): string[] {
  const url = new URL(gatewayUrl)
  if (url.hostname !== '127.0.0.1') return [url.origin]
  return [url.origin, `http://localhost:${url.port}`]
}

/**
 * The configuration the demo runs with: PODGATE_JWT_SECRET when given, otherwise a fresh
 * random secret; loopback only unless PODGATE_HOST says otherwise.
 */
export function demoConfig (config: Config, env: Env): Config {
  const { key } = config.auth
  if (key.kind !== 'secret') {
    const variable = key.kind === 'jwks' ? 'PODGATE_JWKS_URL' : 'PODGATE_JWT_PUBLIC_KEY'
    throw new ConfigError(variable, 'podgate demo signs its own tokens and needs a shared secret: unset it, or set PODGATE_JWT_SECRET instead')
  }
  const secret = isSet(env.PODGATE_JWT_SECRET) ? key.secret : crypto.getRandomValues(new Uint8Array(32))
  return Object.freeze({
    ...config,
    auth: Object.freeze({ ...config.auth, key: Object.freeze({ kind: 'secret' as const, secret }) }),
    gateway: isSet(env.PODGATE_HOST) ? config.gateway : Object.freeze({ ...config.gateway, host: '127.0.0.1' }),
  })
}

interface Instructions {
  readonly gatewayUrl: string
  readonly adminUrl: string
  readonly cookieName: string
  readonly tokens: Readonly<Record<string, string>>
  readonly backends: ReadonlyArray<{ user: string, origin: string, pid: number | undefined }>
  readonly secretFromEnv: boolean
  readonly adminToken: string
  readonly adminTokenFromEnv: boolean
  readonly spawnOnDemand: boolean
  readonly idleTimeoutMs: number
  /** How long a backend started after the demo is up takes to become ready. */
  readonly slowStartMs: number
  readonly login: { issuer: string, password: string } | undefined
}

function loginInstructions (gw: string, login: { issuer: string, password: string }, spawnOnDemand: boolean): string[] {
  return [
    `Sign in with a browser: open ${gw}/ (the identity provider is ${login.issuer})`,
    `  user alice or bob, password ${login.password}: you land in your own workspace`,
    `  carol, same password: ${spawnOnDemand ? 'her workspace is started for her (the starting page first)' : 'she has no workspace (PODGATE_SPAWN_ON_DEMAND=true starts one)'}`,
    `  sign out: ${gw}/.podgate/logout`,
    '',
  ]
}

function instructions (i: Instructions): string {
  const gw = i.gatewayUrl
  const bearer = (user: string): string => quote(`Authorization: Bearer ${i.tokens[user] ?? ''}`)
  const admin = quote(`Authorization: Bearer ${i.adminToken}`)
  const hint = i.secretFromEnv
    ? 'Tokens are signed with PODGATE_JWT_SECRET, so `npm run podgate -- token alice` mints more that this gateway accepts.'
    : 'Tokens are signed with a random secret that dies with this process; set PODGATE_JWT_SECRET (32+ bytes) to make `npm run podgate -- token alice` mint tokens it accepts.'
  return [
    '',
    `podgate demo: gateway ${gw}  admin ${i.adminUrl}`,
    ...i.backends.map((b) => `  backend ${b.user.padEnd(6)} ${b.origin}  (pid ${b.pid ?? '?'})`),
    '',
    ...(i.login === undefined ? [] : loginInstructions(gw, i.login, i.spawnOnDemand)),
    `Paste these (tokens valid for ${TOKEN_TTL_SECONDS / 3600}h):`,
    '',
    '# alice, bearer token: her backend answers and sees X-User-ID: alice',
    `curl -s ${gw}/ -H ${bearer('alice')}`,
    '',
    `# bob, session cookie (${i.cookieName})`,
    `curl -s ${gw}/ -b ${quote(`${i.cookieName}=${i.tokens.bob ?? ''}`)}`,
    '',
    '# no token: 401',
    `curl -si ${gw}/`,
    '',
    '# a request body streamed through the gateway to alice\'s backend and back',
    `curl -s ${gw}/echo -H ${bearer('alice')} --data-binary 'hello through podgate'`,
    '',
    '# metrics',
    `curl -s ${i.adminUrl}/metrics | grep '^podgate_'`,
    '',
    `# admin API (admin token ${i.adminTokenFromEnv ? 'from PODGATE_ADMIN_TOKEN' : 'generated for this run; set PODGATE_ADMIN_TOKEN to choose one'}): create carol, list users`,
    `curl -s -X PUT ${i.adminUrl}/api/users/carol -H ${admin}`,
    `curl -s ${i.adminUrl}/api/users -H ${admin}`,
    '',
    `# carol's backend takes ${formatDuration(i.slowStartMs)} to start, like a pod pulling its image. A browser asking meanwhile`,
    '# gets the starting page (503, it reloads itself); an API client waits until her backend is up',
    `curl -si ${gw}/ -H 'Accept: text/html' -H ${bearer('carol')}`,
    `curl -s ${gw}/ -H ${bearer('carol')}`,
    '',
    i.spawnOnDemand ? '# delete carol: her backend stops (with spawn on demand, her next request starts a new one)' : '# delete carol: her backend stops and her requests are 404 again',
    `curl -s -X DELETE ${i.adminUrl}/api/users/carol -H ${admin}`,
    '',
    i.spawnOnDemand
      ? 'Spawn on demand is on (PODGATE_SPAWN_ON_DEMAND): any valid token starts a backend for its user.'
      : 'Set PODGATE_SPAWN_ON_DEMAND=true to start a backend for any valid token on its first request.',
    i.idleTimeoutMs > 0
      ? `Backends idle for ${formatDuration(i.idleTimeoutMs)} are stopped (PODGATE_IDLE_TIMEOUT); the next request starts them again.`
      : 'Set PODGATE_IDLE_TIMEOUT (e.g. 5m) to stop idle backends; the next request starts them again.',
    hint,
    'Ctrl-C stops the gateway and every backend.',
    '',
  ].join('\n')
}

function formatDuration (ms: number): string {
  if (ms % 3_600_000 === 0) return `${ms / 3_600_000}h`
  if (ms % 60_000 === 0) return `${ms / 60_000}m`
  if (ms % 1000 === 0) return `${ms / 1000}s`
  return `${ms}ms`
}

/** Single-quotes `text` for a POSIX shell. */
function quote (text: string): string {
  return `'${text.replaceAll("'", "'\\''")}'`
}

function isSet (value: string | undefined): boolean {
  return value !== undefined && value.trim() !== ''
}
