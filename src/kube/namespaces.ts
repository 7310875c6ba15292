// The namespaces podgate serves (PODGATE_NAMESPACES): a list, watched one informer per
// namespace, or `all`, watched with one cluster-wide informer per collection.
import { isDnsLabel } from './labels.ts'

export type ServedNamespaces = readonly string[] | 'all'

/** Each informer's namespace: the listed ones, or one `undefined` (cluster-wide) for `all`. */
export function watchScopes (namespaces: ServedNamespaces): ReadonlyArray<string | undefined> {
  return namespaces === 'all' ? [undefined] : namespaces
}

/** Whether `namespace` is one podgate serves. */
export function isServed (namespaces: ServedNamespaces, namespace: string): boolean {
  return namespaces === 'all' ? isDnsLabel(namespace) : namespaces.includes(namespace)
}

/** The REST path of a collection, in one namespace or (undefined) across all of them. */
export function collectionPath (group: string, version: string, plural: string, namespace: string | undefined): string {
  const base = group === '' ? `/api/${version}` : `/apis/${group}/${version}`
  return namespace === undefined ? `${base}/${plural}` : `${base}/namespaces/${namespace}/${plural}`
}

/** Throws a TypeError naming `owner` unless `namespaces` is `all` or a non-empty list of namespace names; returns it without repeats. */
export function checkNamespaces (namespaces: ServedNamespaces, owner: string): ServedNamespaces {
  if (namespaces === 'all') return namespaces
  if (!Array.isArray(namespaces) || namespaces.length === 0 || !namespaces.every((ns) => isDnsLabel(ns))) {
    throw new TypeError(`${owner}: options.namespaces must be 'all' or a non-empty list of namespace names, got ${JSON.stringify(namespaces)}`)
  }
  return [...new Set(namespaces)]
}

/** `namespace/name`: the key of a namespaced object across namespaces. */
export function objectKey (namespace: string, name: string): string {
  return `${namespace}/${name}`
}

/** The namespace and name of an `objectKey`. */
export function splitObjectKey (key: string): { namespace: string, name: string } {
  const slash = key.indexOf('/')
  return { namespace: key.slice(0, slash), name: key.slice(slash + 1) }
}
