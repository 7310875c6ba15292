// Load runners take their parameters as one JSON argument from the harness.

export function parseSpec<T> (argument: string | undefined, required: ReadonlyArray<keyof T & string>): T {
  if (argument === undefined) throw new Error('expected one argument: the load spec as JSON')
  let value: unknown
  try {
    value = JSON.parse(argument)
  } catch {
    throw new Error(`load spec is not JSON: ${argument.slice(0, 80)}`)
  }
  if (typeof value !== 'object' || value === null) throw new Error('load spec must be a JSON object')
  const missing = required.filter((key) => !(key in value))
  if (missing.length > 0) throw new Error(`load spec lacks ${missing.join(', ')}`)
  return value as T
}
