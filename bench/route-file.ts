// The static route table for running podgate (and the nginx dispatcher) without Kubernetes:
// JSON mapping each user id to its endpoints, e.g. {"alice": ["127.0.0.1:8081"]}.
import { writeFileSync } from 'node:fs'

/** `count` user ids: "alice" for one, else user-0000000 … */
export function userIds (count: number): string[] {
  if (count === 1) return ['alice']
  return Array.from({ length: count }, (_, index) => `user-${String(index).padStart(7, '0')}`)
}

/** Up to `count` users spread evenly over the table, so lookups are not all at one end. */
export function spreadSample (users: readonly string[], count: number): string[] {
  const picks = Math.min(count, users.length)
  return Array.from({ length: picks }, (_, index) => users[Math.floor(index * users.length / picks)]!)
}

/** Writes a route file sending every user to the same `address`; returns its size in bytes. */
export function writeRouteFile (path: string, users: readonly string[], address: string): number {
  const target = JSON.stringify([address])
  const text = `{${users.map((user) => `${JSON.stringify(user)}:${target}`).join(',\n')}}\n`
  writeFileSync(path, text)
  return Buffer.byteLength(text)
}
