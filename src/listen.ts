// Why a port could not be opened, in one line an operator can act on: the address, the
// variable that chose it, what is wrong and, for a busy port, which process holds it.
import { readdirSync, readFileSync, readlinkSync } from 'node:fs'
import type { Server as NetServer, ListenOptions, AddressInfo } from 'node:net'
import { basename } from 'node:path'
import { PodgateError } from './errors.ts'

/** Listens with `options`; resolves with the address bound, rejects with the listen error (the raw one: toListenError words it). */
export function listenOn (server: NetServer, options: ListenOptions): Promise<AddressInfo> {
  return new Promise((resolve, reject) => {
    server.once('error', reject)
    server.listen(options, () => {
      server.off('error', reject)
      resolve(server.address() as AddressInfo)
    })
  })
}

/** Where a listener was asked to bind, and the variables that chose the address. */
export interface ListenTarget {
  readonly host: string
  readonly port: number
  /** The variable that chose the port, e.g. PODGATE_PORT. */
  readonly portVariable: string
  /** The variable that chose the host (PODGATE_HOST). */
  readonly hostVariable?: string
}

/** A listener could not bind: the port is taken, privileged, or the address is not this host's. */
export class ListenError extends PodgateError {
  override readonly code = 'PODGATE_LISTEN'
}

/** `127.0.0.1:8080`, `[::1]:8080`. */
export function formatAddress (host: string, port: number): string {
  return `${host.includes(':') ? `[${host}]` : host}:${port}`
}

/**
 * The ListenError for a failed bind of `target`; any other error comes back unchanged.
 * `holders` names the processes listening on a port (by default read from /proc).
 */
export function toListenError (err: unknown, target: ListenTarget, holders: (port: number) => string[] = portHolders): unknown {
  if (err instanceof ListenError) return err
  const code = (err as NodeJS.ErrnoException | undefined)?.code
  const hostVariable = target.hostVariable ?? 'PODGATE_HOST'
  let reason: string
  let variable = target.portVariable
  switch (code) {
    case 'EADDRINUSE': {
      const held = holders(target.port)
      reason = held.length === 0 ? 'address already in use' : `address already in use by ${held.join(', ')}`
      break
    }
    case 'EACCES':
      reason = 'permission denied (ports below 1024 need CAP_NET_BIND_SERVICE)'
      break
    case 'EADDRNOTAVAIL':
      reason = 'address not available (no interface of this host has it)'
      variable = hostVariable
      break
    case 'ENOTFOUND': case 'EAI_AGAIN': case 'EAI_NONAME':
      reason = 'host name not found'
      variable = hostVariable
      break
    default:
      return err
  }
  return new ListenError(`cannot listen on ${formatAddress(target.host, target.port)} (${variable}): ${reason}`, { cause: err })
}

/**
 * `pid 123 (node src/main.ts serve)` for each process with a TCP socket listening on `port`,
 * as far as /proc shows them (Linux; other users' processes only to root). Best effort: [] when
 * nothing can be read.
 */
export function portHolders (port: number, proc = '/proc'): string[] {
  const inodes = listeningInodes(port, proc)
  if (inodes.size === 0) return []
  const found: string[] = []
  let pids: string[]
  try {
    pids = readdirSync(proc).filter((name) => /^\d+$/.test(name))
  } catch {
    return []
  }
  for (const pid of pids) {
    let fds: string[]
    try {
      fds = readdirSync(`${proc}/${pid}/fd`)
    } catch {
      continue
    }
    const holds = fds.some((fd) => {
      try {
        const link = /^socket:\[(\d+)\]$/.exec(readlinkSync(`${proc}/${pid}/fd/${fd}`))
        return link?.[1] !== undefined && inodes.has(link[1])
      } catch {
        return false
      }
    })
    if (holds) found.push(`pid ${pid}${command(`${proc}/${pid}/cmdline`)}`)
  }
  return found
}

/** Inodes of the sockets in state LISTEN on `port`, from /proc/net/tcp and tcp6. */
function listeningInodes (port: number, proc: string): Set<string> {
  const inodes = new Set<string>()
  const hexPort = port.toString(16).toUpperCase().padStart(4, '0')
  for (const table of ['tcp', 'tcp6']) {
    let text: string
    try {
      text = readFileSync(`${proc}/net/${table}`, 'utf8')
    } catch {
      continue
    }
    for (const line of text.split('\n').slice(1)) {
      // sl local_address rem_address st tx:rx tr:when retrnsmt uid timeout inode
      const fields = line.trim().split(/\s+/)
      const local = fields[1]
      if (local === undefined || fields[3] !== '0A' || fields[9] === undefined) continue
      if (local.slice(local.lastIndexOf(':') + 1) === hexPort) inodes.add(fields[9])
    }
  }
  return inodes
}

function command (path: string): string {
  try {
    // The program's name and its first two arguments: enough to recognise it, too little to show a secret passed further on.
    const [program, ...args] = readFileSync(path, 'utf8').split('\0').filter(Boolean).slice(0, 3)
    return program === undefined ? '' : ` (${[basename(program), ...args].join(' ').slice(0, 120)})`
  } catch {
    return ''
  }
}
