// Keeps the memory held by already-forwarded body chunks bounded. Every socket read
// allocates a fresh ArrayBuffer; V8 frees them only at a GC, and under a bulk transfer it
// lets some 64 MB pile up before one (its external-memory trigger), which a pod memory
// limit feels. A young-generation collection when the pile passes a threshold frees them.
import { getHeapStatistics, setFlagsFromString } from 'node:v8'
import { runInNewContext } from 'node:vm'

/** External memory (ArrayBuffers and the like) above which a collection is asked for. */
export const DEFAULT_BUFFER_THRESHOLD_BYTES = 32 * 1024 * 1024
const CHECK_INTERVAL_MS = 25

type Collect = (options: { type: 'minor', execution: 'sync' }) => void

export interface BufferGovernor {
  /** Young-generation collections it asked for. */
  readonly collections: number
  stop (): void
}

export function startBufferGovernor (thresholdBytes = DEFAULT_BUFFER_THRESHOLD_BYTES): BufferGovernor {
  setFlagsFromString('--expose-gc')
  const collect = runInNewContext('gc') as Collect
  let collections = 0
  const timer = setInterval(() => {
    // getHeapStatistics is ~7 µs; process.memoryUsage() reads /proc and costs ~40 µs.
    if (getHeapStatistics().external_memory > thresholdBytes) {
      collect({ type: 'minor', execution: 'sync' })
      collections++
    }
  }, CHECK_INTERVAL_MS)
  timer.unref()
  return {
    get collections () { return collections },
    stop: () => { clearInterval(timer) },
  }
}
