// The admin API on the admin port: what an existing user system (a Django signal, an IdP
// hook) calls when it creates or deletes a user. Bearer-token protected, idempotent, and
// validated in full before anything is applied.
//   PUT    /api/users/:id   {"profile": "name"} (optional; else the default)  201 created, 200 existing
//   GET    /api/users/:id   200, or 404 when the user has no workload
//   DELETE /api/users/:id   204, also when there was none (callers may repeat it)
//   GET    /api/users       200 {"items": [...]}
//   POST   /api/users/:id/revoke   200: the user's tokens issued before now are refused; 404 without a workload
// and the same under /api/namespaces/:ns/users for a namespace podgate serves (Kubernetes):
// without it, a call acts on the user's workload wherever it is and PUT creates in the default.
import { createHash, timingSafeEqual } from 'node:crypto'
import type { FastifyReply, FastifyRequest } from 'fastify'
import { AuthError, BadRequestError, PodgateError, WorkloadNotFoundError } from '../errors.ts'
import type { AdminApp } from '../gateway/admin.ts'
import { isDnsLabel, userIdProblem } from '../kube/labels.ts'
import { componentLogger, type Logger } from '../log.ts'
import type { Workloads, WorkloadSpecInput } from './workloads.ts'

export const MIN_ADMIN_TOKEN_LENGTH = 16
export const MAX_ADMIN_BODY_BYTES = 4_096

const SPEC_FIELDS = ['profile'] as const
const PROFILE_NAME = /^[A-Za-z0-9]([A-Za-z0-9._-]{0,61}[A-Za-z0-9])?$/
const REALM = 'Bearer realm="podgate-admin"'

export interface AdminApiOptions {
  readonly workloads: Workloads
  /** PODGATE_ADMIN_TOKEN; without it every /api route answers 404 saying how to enable it. */
  readonly adminToken: string | undefined
  readonly logger: Logger
  /** Known profile names; when given, an unknown one is refused before anything is applied. */
  readonly profiles?: readonly string[]
}

/** Registers /api/* on the admin server (call before it listens). */
export function registerAdminApi (app: AdminApp, options: AdminApiOptions): void {
  const { workloads, adminToken, profiles } = options
  if (workloads === undefined) throw new TypeError('workloads: required')
  if (options.logger === undefined) throw new TypeError('logger: required')
  if (adminToken !== undefined && (typeof adminToken !== 'string' || adminToken.length < MIN_ADMIN_TOKEN_LENGTH)) {
    throw new TypeError(`adminToken: expected at least ${MIN_ADMIN_TOKEN_LENGTH} characters`)
  }
  if (profiles !== undefined && (!Array.isArray(profiles) || profiles.some((p) => typeof p !== 'string'))) {
    throw new TypeError('profiles: expected an array of profile names')
  }
  const logger = componentLogger(options.logger, 'admin-api')
  const expected = adminToken === undefined ? undefined : digest(adminToken)
  const knownProfiles = profiles === undefined ? undefined : new Set(profiles)

  void app.register((api, _opts, done) => {
    // Bodies are read as text and parsed here, so every bad body gets a message naming it.
    api.removeAllContentTypeParsers()
    api.addContentTypeParser('*', { parseAs: 'string', bodyLimit: MAX_ADMIN_BODY_BYTES }, (_request, body, parsed) => { parsed(null, body) })

    api.setErrorHandler((err, request, reply) => {
      let error: PodgateError
      if (err instanceof PodgateError) {
        error = err
      } else if (isClientError(err)) {
        error = new BadRequestError(err.code === 'FST_ERR_CTP_BODY_TOO_LARGE' ? `body: larger than ${MAX_ADMIN_BODY_BYTES} bytes` : err.message, { cause: err })
      } else {
        logger.error({ err, method: request.method, url: request.url }, 'admin API request failed')
        error = new PodgateError('internal error')
      }
      return sendFailure(reply, error)
    })

    api.addHook('onRequest', (request, reply, next) => {
      if (expected === undefined) {
        void reply.code(404).header('cache-control', 'no-store').send({
          error: 'PODGATE_ADMIN_API_DISABLED',
          message: 'the admin API is disabled: set PODGATE_ADMIN_TOKEN (at least 16 characters) to enable it',
        })
        return
      }
      const refused = checkBearer(request.headers.authorization, expected)
      if (refused !== undefined) {
        logger.warn({ ip: request.ip, reason: refused.reason }, 'admin API refused a request')
        void sendFailure(reply, refused)
        return
      }
      next()
    })

    const put = async (request: FastifyRequest, reply: FastifyReply, { user, namespace }: Target): Promise<FastifyReply> => {
      const spec = parseSpec(request.body, knownProfiles)
      const { workload, created } = await workloads.put(user, spec, namespace)
      logger.info({ user, namespace: workload.namespace, profile: workload.profile, created }, created ? 'workload created' : 'workload updated')
      const location = workload.namespace === undefined ? `/api/users/${user}` : `/api/namespaces/${workload.namespace}/users/${user}`
      return reply.code(created ? 201 : 200).header('location', location).header('cache-control', 'no-store').send(workload)
    }
    const get = async (reply: FastifyReply, { user, namespace }: Target): Promise<FastifyReply> => {
      const workload = await workloads.get(user, namespace)
      if (workload === undefined) throw new WorkloadNotFoundError(`no workload for user ${user}${namespace === undefined ? '' : ` in namespace ${namespace}`}`)
      return reply.header('cache-control', 'no-store').send(workload)
    }
    const remove = async (reply: FastifyReply, { user, namespace }: Target): Promise<FastifyReply> => {
      const existed = await workloads.delete(user, namespace)
      if (existed) logger.info({ user, namespace }, 'workload deleted')
      return reply.code(204).send()
    }
    const list = async (reply: FastifyReply, namespace: string | undefined): Promise<FastifyReply> => {
      const items = await workloads.list(namespace)
      return reply.header('cache-control', 'no-store').send({ items })
    }

    const revoke = async (reply: FastifyReply, { user, namespace }: Target): Promise<FastifyReply> => {
      const workload = await workloads.revoke(user, new Date(), namespace)
      logger.info({ user, namespace: workload.namespace, tokensNotBefore: workload.tokensNotBefore }, 'tokens revoked')
      return reply.header('cache-control', 'no-store').send(workload)
    }

    api.put('/users/*', async (request, reply) => await put(request, reply, { user: userParam(request) }))
    api.post('/users/*', async (request, reply) => await revoke(reply, revokeTarget(String((request.params as Record<string, unknown>)['*']), undefined)))
    api.get('/users/*', async (request, reply) => await get(reply, { user: userParam(request) }))
    api.delete('/users/*', async (request, reply) => await remove(reply, { user: userParam(request) }))
    api.get('/users', async (_request, reply) => await list(reply, undefined))

    // One wildcard, split here, for the same reason as userParam's.
    api.put('/namespaces/*', async (request, reply) => await put(request, reply, namespacedTarget(request)))
    api.post('/namespaces/*', async (request, reply) => {
      const rest = String((request.params as Record<string, unknown>)['*'])
      const slash = rest.indexOf('/users/')
      if (slash < 0) throw new WorkloadNotFoundError('expected /api/namespaces/<namespace>/users/<id>/revoke')
      const namespace = checkNamespace(rest.slice(0, slash))
      return await revoke(reply, revokeTarget(rest.slice(slash + '/users/'.length), namespace))
    })
    api.delete('/namespaces/*', async (request, reply) => await remove(reply, namespacedTarget(request)))
    api.get('/namespaces/*', async (request, reply) => {
      const target = namespacedTarget(request, true)
      return target.user === '' ? await list(reply, target.namespace) : await get(reply, target)
    })
    done()
  }, { prefix: '/api' })
}

function digest (text: string): Buffer {
  return createHash('sha256').update(text).digest()
}

/** Undefined when `header` carries the admin token; compares digests, so in constant time. */
function checkBearer (header: string | undefined, expected: Buffer): AuthError | undefined {
  if (header === undefined || header === '') return new AuthError('missing', 'admin API: send Authorization: Bearer <PODGATE_ADMIN_TOKEN>')
  const match = /^Bearer +(\S+) *$/i.exec(header)
  if (match?.[1] === undefined) return new AuthError('malformed', 'admin API: expected Authorization: Bearer <PODGATE_ADMIN_TOKEN>')
  if (!timingSafeEqual(digest(match[1]), expected)) return new AuthError('signature', 'admin API: wrong admin token')
  return undefined
}

interface Target { readonly user: string, readonly namespace?: string }

// A wildcard rather than `:id`: the router's parameter length limit would answer a long id with 414.
function userParam (request: FastifyRequest): string {
  return checkUserId((request.params as Record<string, unknown>)['*'])
}

function checkUserId (id: unknown): string {
  const problem = userIdProblem(id)
  if (problem !== undefined) throw new BadRequestError(`id: ${problem}`)
  return id as string
}

/** `<id>/revoke`, the one POST the API takes. */
function revokeTarget (rest: string, namespace: string | undefined): Target {
  if (!rest.endsWith('/revoke')) throw new WorkloadNotFoundError('expected POST …/users/<id>/revoke')
  const user = checkUserId(rest.slice(0, -'/revoke'.length))
  return namespace === undefined ? { user } : { user, namespace }
}

function checkNamespace (namespace: string): string {
  if (!isDnsLabel(namespace)) throw new BadRequestError(`namespace: ${JSON.stringify(namespace.slice(0, 64))} is not a namespace name (a DNS-1123 label)`)
  return namespace
}

/** `<namespace>/users/<id>` (or `<namespace>/users` for a list, where allowed: user ''). */
function namespacedTarget (request: FastifyRequest, listAllowed = false): Required<Target> {
  const rest = String((request.params as Record<string, unknown>)['*'])
  const match = /^([^/]*)\/users(?:\/(.*))?$/.exec(rest)
  if (match === null) throw new WorkloadNotFoundError('expected /api/namespaces/<namespace>/users/<id>')
  const namespace = checkNamespace(match[1] ?? '')
  if (match[2] === undefined && listAllowed) return { namespace, user: '' }
  return { namespace, user: checkUserId(match[2] ?? '') }
}

function parseSpec (body: unknown, profiles: ReadonlySet<string> | undefined): WorkloadSpecInput {
  if (body === undefined || (typeof body === 'string' && body.trim() === '')) return {}
  let value: unknown
  try {
    value = JSON.parse(body as string)
  } catch (err) {
    throw new BadRequestError(`body: not valid JSON (${(err as Error).message}); expected an object such as {"profile":"default"}`)
  }
  if (value === null || typeof value !== 'object' || Array.isArray(value)) {
    throw new BadRequestError(`body: expected a JSON object such as {"profile":"default"}, got ${value === null ? 'null' : Array.isArray(value) ? 'an array' : typeof value}`)
  }
  const fields = value as Record<string, unknown>
  for (const name of Object.keys(fields)) {
    if (!(SPEC_FIELDS as readonly string[]).includes(name)) throw new BadRequestError(`${name}: unknown field (allowed: ${SPEC_FIELDS.join(', ')})`)
  }
  const profile = fields.profile
  if (profile === undefined) return {}
  if (typeof profile !== 'string') throw new BadRequestError(`profile: expected a string, got ${profile === null ? 'null' : Array.isArray(profile) ? 'an array' : typeof profile}`)
  if (!PROFILE_NAME.test(profile)) throw new BadRequestError('profile: expected a name of 1–63 letters, digits, \'.\', \'_\' or \'-\'')
  if (profiles !== undefined && !profiles.has(profile)) {
    throw new BadRequestError(`profile: unknown profile ${JSON.stringify(profile)}; known: ${[...profiles].join(', ') || '(none)'}`)
  }
  return { profile }
}

function isClientError (err: unknown): err is Error & { statusCode: number, code?: string } {
  const status = (err as { statusCode?: unknown } | null)?.statusCode
  return err instanceof Error && typeof status === 'number' && status >= 400 && status < 500
}

function sendFailure (reply: FastifyReply, error: PodgateError): FastifyReply {
  if (error instanceof AuthError) reply.header('www-authenticate', error.reason === 'missing' ? REALM : `${REALM}, error="invalid_token"`)
  return reply.code(error.status).header('cache-control', 'no-store').send({ error: error.code, message: error.message })
}
