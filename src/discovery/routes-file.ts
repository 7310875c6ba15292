// A static routing table from a JSON file — { "alice": ["127.0.0.1:8001", …], … } — for
// running `podgate serve` without Kubernetes (development, benchmarks). Read once at start.
import { readFile } from 'node:fs/promises'
import { isDnsLabel } from '../kube/labels.ts'
import { ConfigError } from '../errors.ts'
import { SnapshotPublisher, endpoint, type Endpoint, type EndpointSource } from './source.ts'

const VARIABLE = 'PODGATE_LOCAL_ROUTES'

export class RoutesFileSource extends SnapshotPublisher implements EndpointSource {
  readonly #file: string
  readonly #synced = Promise.withResolvers<void>()
  #isSynced = false

  constructor (file: string) {
    super()
    this.#file = file
  }

  get synced (): Promise<void> { return this.#synced.promise }
  get isSynced (): boolean { return this.#isSynced }

  async start (): Promise<void> {
    let text: string
    try {
      text = await readFile(this.#file, 'utf8')
    } catch (err) {
      throw new ConfigError(VARIABLE, `cannot read ${this.#file} (${(err as NodeJS.ErrnoException).code ?? 'error'})`)
    }
    this.publish(parseRoutes(text))
    this.#isSynced = true
    this.#synced.resolve()
  }

  close (): Promise<void> { return Promise.resolve() }
}

export function parseRoutes (text: string): Map<string, readonly Endpoint[]> {
  let data: unknown
  try {
    data = JSON.parse(text)
  } catch (err) {
    throw new ConfigError(VARIABLE, `not JSON: ${(err as Error).message}`)
  }
  if (data === null || typeof data !== 'object' || Array.isArray(data)) throw new ConfigError(VARIABLE, 'expected an object mapping user ids to lists of "host:port"')
  const routes = new Map<string, readonly Endpoint[]>()
  for (const [user, list] of Object.entries(data)) {
    if (!isDnsLabel(user)) throw new ConfigError(VARIABLE, `${JSON.stringify(user)} is not a valid user id (a DNS-1123 label)`)
    if (!Array.isArray(list)) throw new ConfigError(VARIABLE, `${user}: expected a list of "host:port"`)
    routes.set(user, Object.freeze(list.map((item: unknown, i) => parseHostPort(item, `${user}[${i}]`))))
  }
  return routes
}

function parseHostPort (item: unknown, where: string): Endpoint {
  const match = typeof item === 'string' ? /^\[?([0-9A-Fa-f:.]+)\]?:(\d{1,5})$/.exec(item) : null
  const port = Number(match?.[2])
  if (match === null || port < 1 || port > 65535) throw new ConfigError(VARIABLE, `${where}: expected "ip:port", got ${JSON.stringify(item)}`)
  return endpoint(match[1] as string, port)
}
