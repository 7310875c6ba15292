// Preloaded into a podgate process under test with NODE_OPTIONS=--import (its forked gateway
// workers inherit it): appends the URL of every module the process loads to
// <MODULE_LOG_DIR>/<pid>.log, and when it exits, Node's own internal modules it loaded
// (`internal:<id>`), so a test can check what a process never loads. Every V8 flag the
// process sets for itself is appended too, as `v8flag:<flags>`.
import { appendFileSync } from 'node:fs'
import { registerHooks, syncBuiltinESMExports } from 'node:module'
import { join } from 'node:path'
import v8 from 'node:v8'

const dir = process.env.MODULE_LOG_DIR
if (dir !== undefined) {
  const file = join(dir, `${process.pid}.log`)
  const setFlags = v8.setFlagsFromString.bind(v8)
  v8.setFlagsFromString = (flags: string): void => {
    appendFileSync(file, `v8flag:${flags}\n`)
    setFlags(flags)
  }
  syncBuiltinESMExports()
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
