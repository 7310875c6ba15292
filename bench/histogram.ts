// Latency histogram with three significant digits (1 µs steps below 1 ms), because
// autocannon's own histogram has whole-millisecond resolution: too coarse for a 0.1 ms goal.
const DIGITS = 1000
const MAX_US = 10_000_000

export class LatencyHistogram {
  readonly #counts = new Uint32Array(indexOf(MAX_US) + 1)
  #total = 0
  #sumUs = 0

  get count (): number { return this.#total }

  get meanMs (): number { return this.#total === 0 ? 0 : this.#sumUs / this.#total / 1000 }

  /** Records one latency in milliseconds; values beyond 10 s count as 10 s. */
  record (ms: number): void {
    if (!Number.isFinite(ms) || ms < 0) return
    const us = Math.min(Math.round(ms * 1000), MAX_US)
    this.#counts[indexOf(us)]! += 1
    this.#total += 1
    this.#sumUs += us
  }

  /** The latency in milliseconds below which `percent` of the recorded values fall. */
  percentileMs (percent: number): number {
    if (this.#total === 0) return 0
    const rank = Math.max(1, Math.ceil(percent / 100 * this.#total))
    let seen = 0
    for (let index = 0; index < this.#counts.length; index++) {
      seen += this.#counts[index]!
      if (seen >= rank) return Math.min(valueOf(index), MAX_US) / 1000
    }
    return MAX_US / 1000
  }
}

function indexOf (us: number): number {
  let magnitude = 0
  let leading = us
  while (leading >= DIGITS) {
    leading = Math.floor(leading / 10)
    magnitude += 1
  }
  return DIGITS * magnitude + leading
}

/** The middle of the bucket at `index`, in µs. */
function valueOf (index: number): number {
  const magnitude = Math.floor(index / DIGITS)
  if (magnitude === 0) return index
  const step = 10 ** magnitude
  return (index % DIGITS) * step + step / 2
}
