// Label and field selectors as the Kubernetes API server parses them:
// `a=b`, `a==b`, `a!=b`, `a`, `!a`, `a in (x,y)`, `a notin (x,y)`, comma-joined (all must hold).

export type Labels = Readonly<Record<string, string>> | undefined
export type LabelMatcher = (labels: Labels) => boolean
export type FieldMatcher = (object: unknown) => boolean

export class SelectorError extends Error {
  override name = 'SelectorError'
}

const KEY = /^([a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*\/)?[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$/
const VALUE = /^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$/

/** Splits on commas that are not inside a `( … )` value set. */
function requirements (text: string): string[] {
  const parts: string[] = []
  let depth = 0
  let current = ''
  for (const ch of text) {
    if (ch === '(') depth++
    if (ch === ')') depth--
    if (depth < 0) throw new SelectorError(`unbalanced parenthesis in ${JSON.stringify(text)}`)
    if (ch === ',' && depth === 0) {
      parts.push(current.trim())
      current = ''
    } else {
      current += ch
    }
  }
  if (depth !== 0) throw new SelectorError(`unbalanced parenthesis in ${JSON.stringify(text)}`)
  parts.push(current.trim())
  return parts
}

function checkKey (key: string, text: string): string {
  if (!KEY.test(key) || key.length > 316) throw new SelectorError(`invalid label key ${JSON.stringify(key)} in selector ${JSON.stringify(text)}`)
  return key
}

function checkValue (value: string, text: string): string {
  if (!VALUE.test(value) || value.length > 63) throw new SelectorError(`invalid label value ${JSON.stringify(value)} in selector ${JSON.stringify(text)}`)
  return value
}

function requirement (part: string, text: string): LabelMatcher {
  if (part === '') throw new SelectorError(`empty requirement in selector ${JSON.stringify(text)}`)
  const set = /^(\S+)\s+(in|notin)\s*\((.*)\)$/.exec(part)
  if (set !== null) {
    const key = checkKey(set[1] ?? '', text)
    const values = new Set((set[3] ?? '').split(',').map((v) => checkValue(v.trim(), text)))
    if (set[2] === 'in') return (labels) => labels?.[key] !== undefined && values.has(labels[key])
    return (labels) => labels?.[key] === undefined || !values.has(labels[key])
  }
  const compare = /^([^!=\s]+)\s*(==|=|!=)\s*(.*)$/.exec(part)
  if (compare !== null) {
    const key = checkKey(compare[1] ?? '', text)
    const value = checkValue((compare[3] ?? '').trim(), text)
    if (compare[2] === '!=') return (labels) => labels?.[key] !== value
    return (labels) => labels?.[key] === value
  }
  if (part.startsWith('!')) {
    const key = checkKey(part.slice(1).trim(), text)
    return (labels) => labels?.[key] === undefined
  }
  const key = checkKey(part, text)
  return (labels) => labels?.[key] !== undefined
}

/** Parses a label selector; an empty or absent selector matches everything. */
export function parseLabelSelector (text: string | null | undefined): LabelMatcher {
  if (text === null || text === undefined || text.trim() === '') return () => true
  const matchers = requirements(text).map((part) => requirement(part, text))
  return (labels) => matchers.every((match) => match(labels))
}

function fieldValue (object: unknown, path: string): string | undefined {
  let current: unknown = object
  for (const segment of path.split('.')) {
    if (current === null || typeof current !== 'object') return undefined
    current = (current as Record<string, unknown>)[segment]
  }
  if (current === undefined || current === null) return undefined
  return typeof current === 'string' ? current : JSON.stringify(current)
}

/** Parses a field selector (`metadata.name=x,status.phase!=Running`): equality on dotted paths. */
export function parseFieldSelector (text: string | null | undefined): FieldMatcher {
  if (text === null || text === undefined || text.trim() === '') return () => true
  const matchers = text.split(',').map((part): FieldMatcher => {
    const match = /^([A-Za-z0-9_.]+)\s*(==|=|!=)\s*(.*)$/.exec(part.trim())
    if (match === null) throw new SelectorError(`invalid field selector requirement ${JSON.stringify(part)}`)
    const path = match[1] ?? ''
    const value = (match[3] ?? '').trim()
    if (match[2] === '!=') return (object) => (fieldValue(object, path) ?? '') !== value
    return (object) => (fieldValue(object, path) ?? '') === value
  })
  return (object) => matchers.every((match) => match(object))
}
