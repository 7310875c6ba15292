// What importing a module costs a fresh Node process: RSS, private memory and V8 heap after
// a full collection, before and after the import, each measurement in a process of its own
// (nothing else loaded, nothing shared with an earlier import). Plain JavaScript is imported
// (packages, and podgate compiled to JavaScript) so Node's type stripping is not counted.
import { execFile } from 'node:child_process'
import { promisify } from 'node:util'

const run = promisify(execFile)

export interface MemoryPoint {
  readonly rssKb: number
  readonly privateKb: number
  readonly heapUsed: number
}

export interface ImportCost {
  /** After importing `base` (nothing when empty). */
  readonly before: MemoryPoint
  /** After importing `modules` on top. */
  readonly after: MemoryPoint
}

const MEASURE = `
const { readFileSync } = await import('node:fs')
const kb = (text, field) => Number(new RegExp('^' + field + ':\\\\s+(\\\\d+)', 'm').exec(text)?.[1] ?? 0)
const point = () => {
  gc(); gc()
  const rollup = readFileSync('/proc/self/smaps_rollup', 'utf8')
  return { rssKb: kb(readFileSync('/proc/self/status', 'utf8'), 'VmRSS'), privateKb: kb(rollup, 'Private_Clean') + kb(rollup, 'Private_Dirty'), heapUsed: process.memoryUsage().heapUsed }
}
`

/**
 * Imports `base`, measures, imports `modules`, measures again, in a new process started in
 * `cwd` (where bare package names resolve). Specifiers are package names or file URLs.
 */
export async function importCost (cwd: string, modules: readonly string[], base: readonly string[] = []): Promise<ImportCost> {
  const code = `${MEASURE}
for (const specifier of ${JSON.stringify(base)}) await import(specifier)
const before = point()
for (const specifier of ${JSON.stringify(modules)}) await import(specifier)
process.stdout.write(JSON.stringify({ before, after: point() }))
`
  const { stdout } = await run(process.execPath, ['--expose-gc', '--input-type=module', '-e', code], { cwd, timeout: 60_000, env: { PATH: process.env.PATH ?? '' } })
  return JSON.parse(stdout) as ImportCost
}
