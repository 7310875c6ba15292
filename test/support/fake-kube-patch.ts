// The patch formats the fake API server accepts: JSON merge patch (RFC 7386, also used for
// strategic merge and server-side apply, which a test server can approximate with it) and
// JSON patch (RFC 6902).

export class PatchError extends Error {
  override name = 'PatchError'
}

export function isPlainObject (value: unknown): value is Record<string, unknown> {
  return value !== null && typeof value === 'object' && !Array.isArray(value)
}

/** RFC 7386: objects merge recursively, `null` removes a key, anything else replaces. */
export function mergePatch (target: unknown, patch: unknown): unknown {
  if (!isPlainObject(patch)) return structuredClone(patch)
  const result: Record<string, unknown> = isPlainObject(target) ? { ...target } : {}
  for (const [key, value] of Object.entries(patch)) {
    if (value === null) delete result[key]
    else result[key] = mergePatch(result[key], value)
  }
  return result
}

export interface JsonPatchOperation {
  op: 'add' | 'remove' | 'replace' | 'move' | 'copy' | 'test'
  path: string
  value?: unknown
  from?: string
}

function pointer (path: string): string[] {
  if (path === '') return []
  if (!path.startsWith('/')) throw new PatchError(`invalid JSON pointer ${JSON.stringify(path)}`)
  return path.slice(1).split('/').map((token) => token.replace(/~1/g, '/').replace(/~0/g, '~'))
}

function parentOf (document: unknown, tokens: string[], path: string): { parent: unknown, key: string } {
  let current = document
  for (const token of tokens.slice(0, -1)) {
    if (Array.isArray(current)) current = current[Number(token)]
    else if (isPlainObject(current)) current = current[token]
    else current = undefined
    if (current === undefined) throw new PatchError(`path ${JSON.stringify(path)} does not exist`)
  }
  return { parent: current, key: tokens[tokens.length - 1] ?? '' }
}

function read (document: unknown, path: string): unknown {
  let current = document
  for (const token of pointer(path)) {
    if (Array.isArray(current)) current = current[Number(token)]
    else if (isPlainObject(current)) current = current[token]
    else current = undefined
    if (current === undefined) throw new PatchError(`path ${JSON.stringify(path)} does not exist`)
  }
  return current
}

function arrayIndex (array: unknown[], key: string, path: string, allowEnd: boolean): number {
  if (allowEnd && key === '-') return array.length
  if (!/^(0|[1-9]\d*)$/.test(key)) throw new PatchError(`invalid array index in ${JSON.stringify(path)}`)
  const index = Number(key)
  if (index > array.length || (!allowEnd && index === array.length)) throw new PatchError(`array index out of range in ${JSON.stringify(path)}`)
  return index
}

function add (document: unknown, path: string, value: unknown): unknown {
  const tokens = pointer(path)
  if (tokens.length === 0) return structuredClone(value)
  const { parent, key } = parentOf(document, tokens, path)
  if (Array.isArray(parent)) parent.splice(arrayIndex(parent, key, path, true), 0, structuredClone(value))
  else if (isPlainObject(parent)) parent[key] = structuredClone(value)
  else throw new PatchError(`cannot add at ${JSON.stringify(path)}`)
  return document
}

function remove (document: unknown, path: string): unknown {
  const tokens = pointer(path)
  if (tokens.length === 0) throw new PatchError('cannot remove the whole document')
  const { parent, key } = parentOf(document, tokens, path)
  if (Array.isArray(parent)) parent.splice(arrayIndex(parent, key, path, false), 1)
  else if (isPlainObject(parent) && key in parent) delete parent[key]
  else throw new PatchError(`path ${JSON.stringify(path)} does not exist`)
  return document
}

function isDeepEqual (a: unknown, b: unknown): boolean {
  return JSON.stringify(a) === JSON.stringify(b)
}

/** RFC 6902 on a copy of `document`; throws PatchError when an operation cannot apply. */
export function applyJsonPatch (document: unknown, operations: unknown): unknown {
  if (!Array.isArray(operations)) throw new PatchError('a JSON patch must be an array of operations')
  let result = structuredClone(document)
  for (const raw of operations) {
    if (!isPlainObject(raw) || typeof raw.path !== 'string' || typeof raw.op !== 'string') throw new PatchError(`invalid operation ${JSON.stringify(raw)}`)
    const op = raw as unknown as JsonPatchOperation
    switch (op.op) {
      case 'add': result = add(result, op.path, op.value); break
      case 'remove': result = remove(result, op.path); break
      case 'replace':
        read(result, op.path)
        result = op.path === '' ? structuredClone(op.value) : add(remove(result, op.path), op.path, op.value)
        break
      case 'move': {
        const value = read(result, op.from ?? '')
        result = add(remove(result, op.from ?? ''), op.path, value)
        break
      }
      case 'copy': result = add(result, op.path, read(result, op.from ?? '')); break
      case 'test':
        if (!isDeepEqual(read(result, op.path), op.value)) throw new PatchError(`test failed at ${JSON.stringify(op.path)}`)
        break
      default: throw new PatchError(`unknown operation ${JSON.stringify(raw.op)}`)
    }
  }
  return result
}
