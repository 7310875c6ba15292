// oidc-provider's storage in memory, for the demo's local provider and the tests' one
// (oidc-provider's own memory adapter warns on every start).
import type { Adapter, AdapterFactory, AdapterPayload } from 'oidc-provider'

/** One store per call: each provider gets its own. */
export function memoryAdapter (): AdapterFactory {
  const entries = new Map<string, { payload: AdapterPayload, expiresAt: number }>()
  const live = (key: string): AdapterPayload | undefined => {
    const entry = entries.get(key)
    if (entry === undefined || entry.expiresAt <= Date.now()) return undefined
    return entry.payload
  }
  return (name: string): Adapter => {
    const keyOf = (id: string): string => `${name}:${id}`
    const findWhere = (match: (payload: AdapterPayload) => boolean): AdapterPayload | undefined => {
      for (const [key, entry] of entries) {
        if (key.startsWith(`${name}:`) && match(entry.payload)) return live(key)
      }
      return undefined
    }
    return {
      upsert: (id, payload, expiresIn) => {
        entries.set(keyOf(id), { payload: structuredClone(payload), expiresAt: expiresIn === undefined ? Infinity : Date.now() + expiresIn * 1000 })
        return Promise.resolve()
      },
      find: (id) => Promise.resolve(live(keyOf(id))),
      findByUid: (uid) => Promise.resolve(findWhere((payload) => payload.uid === uid)),
      findByUserCode: (userCode) => Promise.resolve(findWhere((payload) => payload.userCode === userCode)),
      consume: (id) => {
        const payload = live(keyOf(id))
        if (payload !== undefined) payload.consumed = Math.floor(Date.now() / 1000)
        return Promise.resolve()
      },
      destroy: (id) => {
        entries.delete(keyOf(id))
        return Promise.resolve()
      },
      revokeByGrantId: (grantId) => {
        for (const [key, entry] of entries) if (entry.payload.grantId === grantId) entries.delete(key)
        return Promise.resolve()
      },
    }
  }
}
