// The simulated node's pod network: one network namespace joined to the root namespace by a
// veth pair, on a /24 that exists only here. Pod addresses are extra addresses on the
// namespace's end, so podgate (in the root namespace) reaches them over the veth, and the
// API server accepts them in EndpointSlices (it rejects loopback addresses).
import { execFile } from 'node:child_process'
import { randomBytes, randomInt } from 'node:crypto'

export interface CommandResult {
  readonly code: number
  readonly stdout: string
  readonly stderr: string
}

export type RunCommand = (file: string, args: readonly string[]) => Promise<CommandResult>

export const runCommand: RunCommand = (file, args) => new Promise((resolve, reject) => {
  execFile(file, [...args], { timeout: 15_000 }, (err, stdout, stderr) => {
    if (err !== null && typeof err.code !== 'number') {
      reject(new Error((err as NodeJS.ErrnoException).code === 'ENOENT'
        ? `${file} is required for the pod network (apt-get install iproute2)`
        : `${file} ${args.join(' ')}: ${err.message}`))
      return
    }
    resolve({ code: err === null ? 0 : Number(err.code), stdout, stderr })
  })
})

/** First pod address in each subnet; .1 is the root namespace's end, .2 the namespace's own. */
const FIRST_POD_HOST = 10
const LAST_POD_HOST = 250

export class PodNetwork {
  readonly namespace: string
  readonly hostInterface: string
  /** 10.244.N: the first three octets of the /24. */
  readonly prefix: string
  readonly gateway: string
  readonly #podInterface: string
  readonly #run: RunCommand
  readonly #free: number[] = []
  readonly #used = new Set<string>()
  #next = FIRST_POD_HOST
  #destroyed = false

  private constructor (init: { namespace: string, hostInterface: string, podInterface: string, prefix: string, run: RunCommand }) {
    this.namespace = init.namespace
    this.hostInterface = init.hostInterface
    this.#podInterface = init.podInterface
    this.prefix = init.prefix
    this.gateway = `${init.prefix}.1`
    this.#run = init.run
  }

  /** Creates the namespace and the veth pair on an unused 10.244.N.0/24; throws saying what is missing (root, iproute2). */
  static async create (options: { run?: RunCommand } = {}): Promise<PodNetwork> {
    const run = options.run ?? runCommand
    const id = randomBytes(3).toString('hex')
    const routes = await run('ip', ['-4', 'route', 'show'])
    if (routes.code !== 0) throw new Error(`ip route show failed: ${routes.stderr.trim()}`)
    let prefix: string | undefined
    for (let attempt = 0; attempt < 50 && prefix === undefined; attempt++) {
      const candidate = `10.244.${randomInt(0, 256)}`
      if (!routes.stdout.includes(`${candidate}.`)) prefix = candidate
    }
    if (prefix === undefined) throw new Error('no free 10.244.N.0/24 for the pod network')
    const network = new PodNetwork({ namespace: `podgate-e2e-${id}`, hostInterface: `pge${id}h`, podInterface: `pge${id}p`, prefix, run })
    try {
      await network.#setUp()
    } catch (err) {
      await network.destroy()
      throw err
    }
    return network
  }

  async #ip (args: readonly string[]): Promise<string> {
    const result = await this.#run('ip', args)
    if (result.code !== 0) {
      const hint = /Operation not permitted|must be root/i.test(result.stderr) ? ' (network namespaces need root or CAP_NET_ADMIN)' : ''
      throw new Error(`ip ${args.join(' ')}: ${result.stderr.trim()}${hint}`)
    }
    return result.stdout
  }

  async #setUp (): Promise<void> {
    const ns = this.namespace
    await this.#ip(['netns', 'add', ns])
    await this.#ip(['link', 'add', this.hostInterface, 'type', 'veth', 'peer', 'name', this.#podInterface])
    await this.#ip(['link', 'set', this.#podInterface, 'netns', ns])
    await this.#ip(['addr', 'add', `${this.gateway}/24`, 'dev', this.hostInterface])
    await this.#ip(['link', 'set', this.hostInterface, 'up'])
    await this.#ip(['-n', ns, 'link', 'set', 'lo', 'up'])
    await this.#ip(['-n', ns, 'addr', 'add', `${this.prefix}.2/24`, 'dev', this.#podInterface])
    await this.#ip(['-n', ns, 'link', 'set', this.#podInterface, 'up'])
    // Nothing may leave this setup: check that the subnet is routed over the veth, not the default route.
    const route = await this.#ip(['-4', 'route', 'get', `${this.prefix}.${FIRST_POD_HOST}`])
    if (!route.includes(`dev ${this.hostInterface}`)) throw new Error(`the pod subnet ${this.prefix}.0/24 is not routed over ${this.hostInterface}: ${route.trim()}`)
  }

  /** A new pod address, configured inside the namespace and reachable from the root namespace. */
  async allocate (): Promise<string> {
    if (this.#destroyed) throw new Error('the pod network is destroyed')
    const host = this.#free.shift() ?? this.#next++
    if (host > LAST_POD_HOST) throw new Error(`the pod network ${this.prefix}.0/24 has no free address`)
    const ip = `${this.prefix}.${host}`
    await this.#ip(['-n', this.namespace, 'addr', 'add', `${ip}/24`, 'dev', this.#podInterface])
    this.#used.add(ip)
    return ip
  }

  async release (ip: string): Promise<void> {
    if (!this.#used.delete(ip) || this.#destroyed) return
    await this.#ip(['-n', this.namespace, 'addr', 'del', `${ip}/24`, 'dev', this.#podInterface])
    this.#free.push(Number(ip.split('.').at(-1)))
  }

  /** `command args…` run inside the namespace (argv for spawn). */
  exec (command: string, args: readonly string[]): { file: string, args: string[] } {
    return { file: 'ip', args: ['netns', 'exec', this.namespace, command, ...args] }
  }

  /** Deletes the namespace (and with it the veth pair); safe to call twice. */
  async destroy (): Promise<void> {
    if (this.#destroyed) return
    this.#destroyed = true
    await this.#run('ip', ['netns', 'del', this.namespace])
    // Normally gone with its peer; a half-made setup may leave the root end behind.
    await this.#run('ip', ['link', 'del', this.hostInterface])
  }
}
