// What the demo's local provider and the tests' one share: oidc-provider's storage in memory
// (its own memory adapter warns on every start) and the grant of a first-party client.
import type { Adapter, AdapterFactory, AdapterPayload, Grant, KoaContextWithOIDC } from 'oidc-provider'

/** One first-party client: the grant is made at login, so there is no consent step. */
export async function firstPartyGrant (ctx: KoaContextWithOIDC): Promise<Grant | undefined> {
  const clientId = ctx.oidc.client?.clientId
  const accountId = ctx.oidc.session?.accountId
  if (clientId === undefined || accountId === undefined) return undefined
  const existing = ctx.oidc.result?.consent?.grantId ?? ctx.oidc.session?.grantIdFor(clientId)
  if (existing !== undefined) {
    const grant = await ctx.oidc.provider.Grant.find(existing)
    if (grant !== undefined) return grant
  }
  const grant = new ctx.oidc.provider.Grant({ clientId, accountId })
  grant.addOIDCScope('openid profile email')
  await grant.save()
  return grant
}

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
