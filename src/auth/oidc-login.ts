// podgate's own OpenID Connect login: the authorization code flow with PKCE, state and nonce,
// done by openid-client. /.podgate/login sends the browser to the provider; /.podgate/callback
// exchanges the code, has the ID token checked and sets the session cookie — an HS256 JWT podgate
// signs itself, which the verifier checks like any other token; /.podgate/logout ends it.
// docs/adr/0008-oidc-login.md says why the session is podgate's own token.
import type { IncomingMessage, ServerResponse } from 'node:http'
import * as client from 'openid-client'
import { systemClock, type Clock } from '../clock.ts'
import type { AuthConfig } from '../config.ts'
import { BadRequestError, ForbiddenError, LoginFailedError, NotReadyError, PodgateError } from '../errors.ts'
import { requestOrigin } from '../gateway/headers.ts'
import { isDnsLabel, userIdProblem } from '../kube/labels.ts'
import type { Logger } from '../log.ts'
import { mintToken } from './mint.ts'
import type { OidcConfig } from './oidc-config.ts'
import { clearCookie, readCookie, setCookie } from './oidc-cookies.ts'
import { FLOW_TTL_S, flowCookieName, flowKey, openFlow, sealFlow, type LoginFlow } from './oidc-flow.ts'
import { CALLBACK_PATH, LOGIN_PATH, RESERVED_PREFIX, safeReturnPath } from './oidc-paths.ts'

export interface OidcLoginOptions {
  /** PODGATE_* token settings, with `oidc` set and a shared secret as the key (checkOidcConfig). */
  readonly auth: AuthConfig
  /** PODGATE_TRUST_PROXY: a derived callback URL takes its scheme and host from X-Forwarded-Proto/-Host. */
  readonly trustProxy: boolean
  readonly logger: Logger
  /** Its now() is the session token's issue time and the flow cookie's clock. */
  readonly clock?: Clock | undefined
}

/** The ID token is kept for logout's id_token_hint only while it fits a cookie with room to spare. */
const MAX_ID_TOKEN_COOKIE_BYTES = 3800
/** Sent only to /.podgate/ paths, so it never travels with requests for pods. */
const ID_TOKEN_COOKIE = 'podgate-oidc-id'
/** Each discovery, code exchange and JWKS fetch at the provider (openid-client's timeout, in seconds). */
const PROVIDER_TIMEOUT_S = 10
const RESTART = `start again at ${LOGIN_PATH}`
const NO_STATE = new BadRequestError(`the login callback carries no valid state parameter: ${RESTART}`)
const UNKNOWN_STATE = new BadRequestError(`this login is unknown here: it is older than ${FLOW_TTL_S / 60} minutes, was finished already, or was started in another browser; ${RESTART}`)
const BAD_FLOW = new BadRequestError(`the login's state cookie is not valid (altered, or expired): ${RESTART}`)
type Claims = Readonly<Record<string, unknown>>
const UNREACHABLE_CODES = new Set(['OAUTH_TIMEOUT', 'OAUTH_ABORT', 'OAUTH_RESPONSE_IS_NOT_CONFORM', 'OAUTH_RESPONSE_IS_NOT_JSON'])

export class OidcLogin {
  readonly #oidc: OidcConfig
  readonly #auth: AuthConfig
  readonly #secret: Uint8Array
  readonly #flowKey: Uint8Array
  readonly #trustProxy: boolean
  readonly #logger: Logger
  readonly #clock: Clock
  /** The provider's metadata and client, discovered at the first login and kept; a failed discovery is retried by the next. */
  #configuration: Promise<client.Configuration> | undefined

  constructor (options: OidcLoginOptions) {
    const { auth } = options
    if (auth.oidc === undefined) throw new TypeError('OidcLogin needs auth.oidc (PODGATE_OIDC_ISSUER)')
    if (auth.key.kind !== 'secret') throw new TypeError('OidcLogin needs a shared secret (PODGATE_JWT_SECRET) to sign sessions with')
    this.#oidc = auth.oidc
    this.#auth = auth
    this.#secret = auth.key.secret
    this.#flowKey = flowKey(auth.key.secret)
    this.#trustProxy = options.trustProxy
    this.#logger = options.logger
    this.#clock = options.clock ?? systemClock
  }

  /** GET /.podgate/login?rd=<path>: a fresh flow in its own cookie, and a redirect to the provider. */
  async login (req: IncomingMessage, res: ServerResponse): Promise<void> {
    const configuration = await this.#provider()
    const redirectUri = this.#redirectUri(req)
    const flow: LoginFlow = {
      state: client.randomState(),
      nonce: client.randomNonce(),
      codeVerifier: client.randomPKCECodeVerifier(),
      returnTo: safeReturnPath(new URLSearchParams(queryOf(req.url)).get('rd') ?? '/'),
      redirectUri,
    }
    const cookieName = flowCookieName(flow.state)
    if (cookieName === undefined) throw new Error('openid-client made a state podgate cannot name a cookie after')
    const authorizationUrl = client.buildAuthorizationUrl(configuration, {
      redirect_uri: redirectUri,
      scope: this.#oidc.scopes.join(' '),
      state: flow.state,
      nonce: flow.nonce,
      code_challenge: await client.calculatePKCECodeChallenge(flow.codeVerifier),
      code_challenge_method: 'S256',
    })
    const sealed = await sealFlow(flow, this.#flowKey, this.#clock.now())
    redirect(res, authorizationUrl.href, [setCookie(cookieName, sealed, { path: CALLBACK_PATH, maxAgeS: FLOW_TTL_S, secure: isHttps(redirectUri) })])
  }

  /**
   * GET /.podgate/callback?code=…&state=…: the flow named by `state` is opened and spent, the
   * code exchanged, the ID token checked (signature, issuer, audience, nonce, expiry), the user
   * read from it; then the session cookie, and a redirect to where the login started.
   */
  async callback (req: IncomingMessage, res: ServerResponse): Promise<void> {
    const query = queryOf(req.url)
    const state = new URLSearchParams(query).get('state')
    const cookieName = flowCookieName(state)
    if (cookieName === undefined) throw NO_STATE
    const sealed = readCookie(req.headers.cookie, cookieName)
    if (sealed === undefined) throw UNKNOWN_STATE
    const flow = await openFlow(sealed, this.#flowKey, this.#clock.now())
    const secure = flow === undefined ? isHttps(this.#redirectUri(req)) : isHttps(flow.redirectUri)
    // The flow is spent whatever happens next; an error response carries this too.
    const spent = clearCookie(cookieName, CALLBACK_PATH, secure)
    res.setHeader('set-cookie', spent)
    if (flow === undefined || flow.state !== state) throw BAD_FLOW
    const configuration = await this.#provider()
    const currentUrl = new URL(flow.redirectUri)
    currentUrl.search = query
    let tokens: Awaited<ReturnType<typeof client.authorizationCodeGrant>>
    try {
      tokens = await client.authorizationCodeGrant(configuration, currentUrl, {
        expectedState: flow.state,
        expectedNonce: flow.nonce,
        pkceCodeVerifier: flow.codeVerifier,
      })
    } catch (err) {
      throw this.#refusal(err)
    }
    const claims = await this.#claims(configuration, tokens)
    const user = this.#user(claims)
    const session = await mintToken({
      secret: this.#secret,
      user,
      ttlSeconds: this.#oidc.sessionTtlS,
      claim: this.#auth.userClaim,
      issuer: this.#auth.issuer?.[0],
      audience: this.#auth.audience?.[0],
      claims: this.#tenant(claims),
      clock: this.#clock,
    })
    const cookies = [spent, setCookie(this.#auth.cookieName, session, { path: '/', maxAgeS: this.#oidc.sessionTtlS, secure })]
    const idToken = tokens.id_token
    if (idToken !== undefined && idToken.length <= MAX_ID_TOKEN_COOKIE_BYTES) {
      cookies.push(setCookie(ID_TOKEN_COOKIE, idToken, { path: RESERVED_PREFIX, maxAgeS: this.#oidc.sessionTtlS, secure }))
    }
    this.#logger.info({ user }, 'signed in')
    redirect(res, flow.returnTo, cookies)
  }

  /**
   * GET or POST /.podgate/logout: the session cookie is cleared, and the browser goes to the
   * provider's end_session_endpoint (with id_token_hint when kept) to end the provider's session
   * too, or to `/` when it has none or cannot be reached.
   */
  async logout (req: IncomingMessage, res: ServerResponse): Promise<void> {
    const callbackUrl = this.#redirectUri(req)
    const secure = isHttps(callbackUrl)
    const cookies = [clearCookie(this.#auth.cookieName, '/', secure), clearCookie(ID_TOKEN_COOKIE, RESERVED_PREFIX, secure)]
    let location = '/'
    try {
      const configuration = await this.#provider()
      if (configuration.serverMetadata().end_session_endpoint !== undefined) {
        const parameters: Record<string, string> = { post_logout_redirect_uri: new URL('/', callbackUrl).href }
        const idToken = idTokenHint(req.headers.cookie)
        if (idToken !== undefined) parameters.id_token_hint = idToken
        location = client.buildEndSessionUrl(configuration, parameters).href
      }
    } catch (err) {
      this.#logger.warn({ error: describe(err) }, 'signed out of podgate only: the identity provider could not be asked')
    }
    redirect(res, location, cookies)
  }

  #provider (): Promise<client.Configuration> {
    if (this.#configuration !== undefined) return this.#configuration
    const discovered = this.#discover()
    this.#configuration = discovered
    discovered.catch(() => { if (this.#configuration === discovered) this.#configuration = undefined })
    return discovered
  }

  async #discover (): Promise<client.Configuration> {
    const { issuer, clientId, clientSecret } = this.#oidc
    try {
      const configuration = await client.discovery(
        issuer,
        clientId,
        clientSecret === undefined ? undefined : { client_secret: clientSecret },
        clientSecret === undefined ? client.None() : client.ClientSecretBasic(clientSecret),
        // An http issuer is the operator's explicit choice (an in-cluster Service, a test).
        { timeout: PROVIDER_TIMEOUT_S, execute: issuer.protocol === 'http:' ? [client.allowInsecureRequests] : [] },
      )
      this.#logger.info({ issuer: issuer.href }, 'identity provider discovered')
      return configuration
    } catch (err) {
      this.#logger.warn({ issuer: issuer.href, error: describe(err) }, 'identity provider discovery failed; the next login tries again')
      throw new NotReadyError(`the identity provider ${issuer.href} cannot be reached or did not answer usably: try again shortly`, 5, { cause: err })
    }
  }

  /** The callback URL: PODGATE_OIDC_REDIRECT_URL, else this request's origin (trust-proxy rules) and /.podgate/callback. */
  #redirectUri (req: IncomingMessage): string {
    const configured = this.#oidc.redirectUrl
    if (configured !== undefined) return configured.href
    const origin = requestOrigin(req, this.#trustProxy)
    const url = URL.parse(CALLBACK_PATH, origin)
    if (url === null || url.origin !== origin) throw new BadRequestError('podgate cannot name its callback URL from this request\'s host: set PODGATE_OIDC_REDIRECT_URL')
    return url.href
  }

  /**
   * The ID token's claims; when it lacks the user claim (or the tenant claim), the UserInfo
   * endpoint's too, ID token first: some providers put profile claims only there for this flow.
   */
  async #claims (configuration: client.Configuration, tokens: Awaited<ReturnType<typeof client.authorizationCodeGrant>>): Promise<Claims> {
    const idToken = tokens.claims()
    if (idToken === undefined) throw new LoginFailedError('the identity provider returned no ID token')
    const wanted = [this.#oidc.userClaim, this.#auth.tenantClaim].filter((name) => name !== undefined)
    if (wanted.every((name) => Object.hasOwn(idToken, name)) || configuration.serverMetadata().userinfo_endpoint === undefined) return idToken
    try {
      return { ...await client.fetchUserInfo(configuration, tokens.access_token, idToken.sub), ...idToken }
    } catch (err) {
      throw this.#refusal(err)
    }
  }

  /** The user id: it names the user's workload, so anything but a usable DNS-1123 label refuses the login. */
  #user (claims: Claims): string {
    const name = this.#oidc.userClaim
    const value = Object.hasOwn(claims, name) ? claims[name] : undefined
    if (value === undefined) throw new ForbiddenError(`signed in at the identity provider, but it names no ${JSON.stringify(name)} claim (PODGATE_OIDC_USER_CLAIM) in the ID token or UserInfo, so podgate cannot tell whose workload this is`)
    if (typeof value !== 'string') throw new ForbiddenError(`signed in at the identity provider, but its ${JSON.stringify(name)} claim is not a string`)
    const problem = userIdProblem(value)
    if (problem !== undefined) throw new ForbiddenError(`signed in at the identity provider, but your ${JSON.stringify(name)} (${JSON.stringify(value.slice(0, 64))}) cannot be a podgate user id: ${problem}`)
    return value
  }

  /** With PODGATE_TENANT_CLAIM, the ID token's claim of that name goes into the session token. */
  #tenant (claims: Claims): Record<string, string> | undefined {
    const name = this.#auth.tenantClaim
    if (name === undefined) return undefined
    const value = Object.hasOwn(claims, name) ? claims[name] : undefined
    if (!isDnsLabel(value)) throw new ForbiddenError(`signed in at the identity provider, but it names no ${JSON.stringify(name)} claim that is a namespace name (PODGATE_TENANT_CLAIM)`)
    return { [name]: value }
  }

  /** What a failed code exchange or a refused ID token answers: 401, or 503 when the provider did not answer. */
  #refusal (err: unknown): PodgateError {
    if (err instanceof PodgateError) return err
    if (err instanceof client.AuthorizationResponseError) {
      return new LoginFailedError(`the identity provider refused the login: ${oauthError(err.error, err.error_description)}`, { cause: err })
    }
    if (err instanceof client.ResponseBodyError) {
      if (err.status >= 500) return new NotReadyError(`the identity provider failed to exchange the code (${err.status} ${err.error}): try again shortly`, 5, { cause: err })
      return new LoginFailedError(`the identity provider refused the authorization code (${oauthError(err.error, err.error_description)}): it was used already or has expired; ${RESTART}`, { cause: err })
    }
    if (isUnreachable(err)) return new NotReadyError('the identity provider did not answer: try again shortly', 5, { cause: err })
    if (err instanceof client.ClientError) {
      // The ID token's own check (nonce, issuer, audience, signature, expiry) says what failed in the cause.
      return new LoginFailedError(`the identity provider's answer was refused: ${describe(err.cause ?? err)}; ${RESTART}`, { cause: err })
    }
    this.#logger.error({ err }, 'unexpected failure finishing a login')
    return new LoginFailedError(`the login could not be finished; ${RESTART}`, { cause: err })
  }
}

function idTokenHint (cookieHeader: string | undefined): string | undefined {
  try {
    return readCookie(cookieHeader, ID_TOKEN_COOKIE)
  } catch {
    // Two different copies: no hint is better than a guess; the provider then asks.
    return undefined
  }
}

function redirect (res: ServerResponse, location: string, cookies: readonly string[]): void {
  res.writeHead(303, {
    location,
    'set-cookie': cookies as string[],
    'cache-control': 'no-store',
    'content-length': '0',
  })
  res.end()
}

function queryOf (url: string | undefined): string {
  const at = url?.indexOf('?') ?? -1
  return at === -1 || url === undefined ? '' : url.slice(at + 1)
}

function isHttps (url: string): boolean {
  return url.startsWith('https:')
}

/** fetch() failing to connect is a TypeError without a code; openid-client's own TypeErrors carry one. */
function isUnreachable (err: unknown): boolean {
  if (err instanceof client.ClientError) return err.code !== undefined && UNREACHABLE_CODES.has(err.code)
  return err instanceof TypeError && (err as { code?: unknown }).code === undefined
}

function oauthError (error: string, description: string | undefined): string {
  return description === undefined ? error : `${error}: ${description}`
}

function describe (err: unknown): string {
  return err instanceof Error ? err.message : String(err)
}
