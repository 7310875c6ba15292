// Child-process helpers shared by the tests that start real backend processes.
import { spawn, type ChildProcess } from 'node:child_process'

/** True while a process with `pid` exists; ESRCH means gone, any other error is a test bug. */
export function isAlive (pid: number | undefined): boolean {
  if (pid === undefined) return false
  try {
    process.kill(pid, 0)
    return true
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ESRCH') return false
    throw err
  }
}

/** True while any process of process group `pgid` exists (a podgate and whatever it forked). */
export function isGroupAlive (pgid: number | undefined): boolean {
  return pgid !== undefined && isAlive(-pgid)
}

/** A `spawn` for LocalDriver that also records every child it starts in `children`. */
export function recordingSpawn (children: ChildProcess[]): typeof spawn {
  return ((...args: Parameters<typeof spawn>) => {
    const child = spawn(...args)
    children.push(child)
    return child
  }) as typeof spawn
}
