// Preloaded into a podgate process under test with NODE_OPTIONS=--import (its forked gateway
// workers inherit it): appends the URL of every module the process loads to
// <MODULE_LOG_DIR>/<pid>.log, and when it exits, Node's own internal modules it loaded
// (`internal:<id>`), so a test can check what a process never loads.
import { appendFileSync } from 'node:fs'
import { registerHooks } from 'node:module'
import { join } from 'node:path'

const dir = process.env.MODULE_LOG_DIR
if (dir !== undefined) {
  const file = join(dir, `${process.pid}.log`)
  registerHooks({
    load: (url, context, next) => {
      appendFileSync(file, `${url}\n`)
      return next(url, context)
    },
  })
  process.once('exit', () => {
    const internal = (process as unknown as { moduleLoadList: string[] }).moduleLoadList
      .filter((entry) => entry.startsWith('NativeModule internal/'))
      .map((entry) => `internal:${entry.slice('NativeModule internal/'.length)}\n`)
    appendFileSync(file, internal.join(''))
  })
}
