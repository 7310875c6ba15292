// The naming contract between what the controller writes (templates.ts: labelled Deployments
// and Services named user-<id>) and everyone who reads it (the EndpointSlice index, the orphan
// sweep, the local driver, the test simulators), plus the DNS-1123 label rule that user ids,
// profile names and namespaces follow. Defined here once; nothing else spells these strings.

export const MANAGED_BY_LABEL = 'app.kubernetes.io/managed-by'
export const MANAGED_BY = 'podgate'
/** Carries the user id on every child; EndpointSlices inherit it from the Service. */
export const USER_LABEL = 'podgate.dev/user'
/** The workload's profile, on its Service: EndpointSlices inherit it, so the gateway learns each user's per-profile limits where it learns their endpoints. */
export const PROFILE_LABEL = 'podgate.dev/profile'
/** The container and Service port the gateway routes to. */
export const HTTP_PORT_NAME = 'http'
/** Label selector for every object podgate manages (children, their pods, EndpointSlices). */
export const MANAGED_BY_SELECTOR = `${MANAGED_BY_LABEL}=${MANAGED_BY}`

export const MAX_DNS_LABEL_LENGTH = 63
const WORKLOAD_NAME_PREFIX = 'user-'
/** Longest user id whose `user-<id>` still fits a 63-character DNS label (Service names). */
export const MAX_WORKLOAD_USER_LENGTH = MAX_DNS_LABEL_LENGTH - WORKLOAD_NAME_PREFIX.length

/**
 * A DNS-1123 label: 1–63 of a-z 0-9 '-', starting and ending alphanumeric. Exported for
 * pattern-taking readers (config); prefer isDnsLabel.
 */
export const DNS_LABEL = /^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?$/

/** A DNS-1123 subdomain (most object names: Leases, StorageClasses): labels joined by dots, at most 253. */
export const DNS_SUBDOMAIN = /^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$/

/** True when `value` is a DNS-1123 label exactly as given: no lowercasing, trimming or Unicode normalisation. */
// A string argument gets a plain boolean, so a rejected string is still a string to TypeScript.
export function isDnsLabel (value: string): boolean
export function isDnsLabel (value: unknown): value is string
export function isDnsLabel (value: unknown): boolean {
  return typeof value === 'string' && DNS_LABEL.test(value)
}

/**
 * Why `user` cannot have a workload, or undefined when it can: a DNS label short enough for
 * `user-<id>`. Authentication only asks for a DNS label (isDnsLabel), so a token may carry a
 * 59–63 character id that is authenticated but can never get a workload.
 */
export function userIdProblem (user: unknown): string | undefined {
  if (!isDnsLabel(user)) return 'expected a DNS-1123 label: lowercase letters, digits and \'-\', starting and ending with a letter or digit'
  if (user.length > MAX_WORKLOAD_USER_LENGTH) return `at most ${MAX_WORKLOAD_USER_LENGTH} characters (user-<id> names a Kubernetes Service), got ${user.length}`
  return undefined
}

/** True when `user` can have a workload (see userIdProblem). */
export function isUserId (user: unknown): user is string {
  return userIdProblem(user) === undefined
}

/** Kubernetes object name of a user's UserWorkload, Deployment, Service and NetworkPolicy. */
export function workloadName (user: string): string {
  return `${WORKLOAD_NAME_PREFIX}${user}`
}
