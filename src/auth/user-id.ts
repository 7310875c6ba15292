// A user id becomes part of Kubernetes object names (user-<id>), so it must be a DNS-1123
// label exactly as received: no lowercasing, trimming or Unicode normalisation.

const DNS_1123_LABEL = /^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?$/

/** True when `id` is a DNS-1123 label: 1–63 of a-z 0-9 '-', starting and ending alphanumeric. */
export function isValidUserId (id: unknown): id is string {
  return typeof id === 'string' && DNS_1123_LABEL.test(id)
}
