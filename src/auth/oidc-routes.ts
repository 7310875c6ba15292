// What the gateway answers under /.podgate/ (isReservedPath), before authentication and
// never forwarded to a pod: the OpenID Connect login when PODGATE_OIDC_ISSUER is set, 404
// PODGATE_NOT_FOUND for everything else.
import type { IncomingMessage, ServerResponse } from 'node:http'
import type { Clock } from '../clock.ts'
import type { AuthConfig, GatewayConfig } from '../config.ts'
import { BadRequestError, NotFoundError, PodgateError } from '../errors.ts'
import { sendError } from '../gateway/respond.ts'
import { componentLogger, type Logger } from '../log.ts'
import { OidcLogin } from './oidc-login.ts'
import { CALLBACK_PATH, LOGIN_PATH, LOGOUT_PATH } from './oidc-paths.ts'

export interface ReservedRoutes {
  /** Answers a request for a path under /.podgate/. Never throws. */
  handle (req: IncomingMessage, res: ServerResponse): void
}

export interface ReservedRoutesOptions {
  readonly auth: AuthConfig
  readonly gateway: Pick<GatewayConfig, 'trustProxy'>
  readonly logger: Logger
  readonly clock?: Clock | undefined
}

/** A WebSocket to a podgate path: nothing there takes one. */
export const RESERVED_UPGRADE = new NotFoundError('nothing under /.podgate/ takes a WebSocket')
const NOT_FOUND = new NotFoundError('nothing is served at this path under /.podgate/ (podgate keeps the prefix for itself)')
const LOGIN_OFF = new NotFoundError('podgate\'s own login is not configured (PODGATE_OIDC_ISSUER)')

type Action = (req: IncomingMessage, res: ServerResponse) => Promise<void>

/** The routes for `options.auth`: the login's three paths when it has `oidc`. */
export function reservedRoutes (options: ReservedRoutesOptions): ReservedRoutes {
  const logger = componentLogger(options.logger, 'oidc')
  const login = options.auth.oidc === undefined
    ? undefined
    : new OidcLogin({ auth: options.auth, trustProxy: options.gateway.trustProxy, logger, clock: options.clock })
  return new PodgateRoutes(login, logger)
}

class PodgateRoutes implements ReservedRoutes {
  readonly #login: OidcLogin | undefined
  readonly #logger: Logger

  constructor (login: OidcLogin | undefined, logger: Logger) {
    this.#login = login
    this.#logger = logger
  }

  handle (req: IncomingMessage, res: ServerResponse): void {
    // No route reads a body (a logout form's is empty); drain it so the connection can be reused.
    req.resume()
    res.setHeader('cache-control', 'no-store')
    // The callback's URL carries the code and the state: never hand it on as a Referer.
    res.setHeader('referrer-policy', 'no-referrer')
    const action = this.#route(req)
    if (action instanceof PodgateError) {
      sendError(res, action)
      return
    }
    action(req, res).catch((err: unknown) => {
      if (!(err instanceof PodgateError)) this.#logger.error({ err }, 'unexpected failure under /.podgate/')
      sendError(res, err)
    })
  }

  #route (req: IncomingMessage): Action | PodgateError {
    const url = req.url ?? ''
    const query = url.indexOf('?')
    const path = query === -1 ? url : url.slice(0, query)
    const method = req.method ?? 'GET'
    const login = this.#login
    switch (path) {
      case LOGIN_PATH:
        if (login === undefined) return LOGIN_OFF
        return method === 'GET' || method === 'HEAD' ? (q, s) => login.login(q, s) : wrongMethod(path, 'GET')
      case CALLBACK_PATH:
        if (login === undefined) return LOGIN_OFF
        return method === 'GET' ? (q, s) => login.callback(q, s) : wrongMethod(path, 'GET')
      case LOGOUT_PATH:
        if (login === undefined) return LOGIN_OFF
        return method === 'GET' || method === 'POST' ? (q, s) => login.logout(q, s) : wrongMethod(path, 'GET or POST')
      default:
        return NOT_FOUND
    }
  }
}

function wrongMethod (path: string, allowed: string): BadRequestError {
  return new BadRequestError(`${path} takes ${allowed}`)
}
