// Per-user revocation marks: tokens of a user issued before the mark are refused. The marks
// come from the workloads (UserWorkload spec.tokensNotBefore, or the local driver) and reach
// every verifier: this process's, and each gateway worker's through its primary.
import type { TokenVerifier } from './identity.ts'
import type { WorkloadChange, Workloads } from '../workloads/workloads.ts'

export type RevocationListener = (user: string, notBeforeS: number) => void

/** user → epoch seconds; a mark only ever moves later. */
export class RevocationMarks {
  readonly #marks = new Map<string, number>()
  readonly #listeners = new Set<RevocationListener>()

  get size (): number { return this.#marks.size }

  /** Records the mark when it is later than the user's current one; tells the listeners then. */
  set (user: string, notBeforeS: number): void {
    if (!Number.isFinite(notBeforeS)) return
    const current = this.#marks.get(user)
    if (current !== undefined && current >= notBeforeS) return
    this.#marks.set(user, notBeforeS)
    for (const listener of this.#listeners) listener(user, notBeforeS)
  }

  entries (): Array<[string, number]> {
    return [...this.#marks]
  }

  onChange (listener: RevocationListener): () => void {
    this.#listeners.add(listener)
    return () => { this.#listeners.delete(listener) }
  }

  /** Applies every mark to `verifier`, now and as they come; returns the unsubscribe function. */
  enforce (verifier: TokenVerifier): () => void {
    for (const [user, notBeforeS] of this.#marks) verifier.revoke(user, notBeforeS)
    return this.onChange((user, notBeforeS) => { verifier.revoke(user, notBeforeS) })
  }
}

/** epoch seconds of an RFC 3339 time; undefined when absent or unreadable. */
export function notBeforeSeconds (value: string | undefined): number | undefined {
  if (value === undefined) return undefined
  const ms = Date.parse(value)
  return Number.isNaN(ms) ? undefined : Math.floor(ms / 1000)
}

/**
 * Marks from the workloads' tokensNotBefore, as their change events bring them (subscribe before
 * the workloads' first list: each listed workload arrives as a change). A deleted workload
 * keeps its mark: its old tokens stay refused.
 */
export function followRevocations (workloads: Pick<Workloads, 'onChange'>, marks: RevocationMarks): () => void {
  if (workloads.onChange === undefined) return () => {}
  return workloads.onChange((change: WorkloadChange) => {
    const notBefore = notBeforeSeconds(change.workload?.tokensNotBefore)
    if (notBefore !== undefined) marks.set(change.user, notBefore)
  })
}
