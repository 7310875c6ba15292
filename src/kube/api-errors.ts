// How a failed Kubernetes API call is read: its HTTP status, and the API server's own message
// in one short line (the client's error message repeats the whole body and every header).
import { ApiException } from '@kubernetes/client-node'

/** The HTTP status of a failed API call; undefined for a network failure or a timeout. */
export function apiStatus (err: unknown): number | undefined {
  return err instanceof ApiException ? err.code : undefined
}

/** The API server's own message (from the Status body) when there is one. */
export function apiErrorMessage (err: unknown): string {
  if (err instanceof ApiException) {
    const body = statusBody(err.body)
    const message = typeof body === 'object' && body !== null && 'message' in body ? String(body.message) : undefined
    return `${err.code}${message === undefined ? '' : ` ${message}`}`
  }
  if (err instanceof Error) {
    const cause = (err.cause as { code?: unknown } | undefined)?.code
    return `${err.name === 'TimeoutError' ? 'timed out' : err.message}${typeof cause === 'string' ? ` (${cause})` : ''}`
  }
  return String(err)
}

/** The Status object of an error response, which the client leaves as text for some calls (lists). */
function statusBody (body: unknown): unknown {
  if (typeof body !== 'string') return body
  try {
    return JSON.parse(body)
  } catch {
    return undefined
  }
}
