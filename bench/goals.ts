// The performance goals of the benchmark issue, checked as ratios from one run. A miss is
// reported (FAIL), never an error: the harness only fails when it could not measure.
import type { PathResult } from './measure.ts'
import { OPEN_LOOP_REFERENCE } from './open-loop.ts'
import type { OpenLoopRate } from './open-loop.ts'
import { USERS_PATH_PREFIX } from './paths/index.ts'
import { minimalPathId, WIRE_STEP } from './paths/minimal.ts'

export type GoalStatus = 'PASS' | 'FAIL' | 'SKIP'

export interface GoalResult {
  readonly goal: string
  readonly target: string
  readonly measured: string
  readonly status: GoalStatus
}

/** The minimal proxy of podgate's own parts: beside a miss, what the same stack without podgate's work measured. */
const FLOOR = minimalPathId()
/** The floor sending the request headers podgate sends by default: what of the gap those headers are. */
const WIRE_FLOOR = minimalPathId(WIRE_STEP)
/** podgate's CPU per request at most this many times the floor's, with every default feature on. */
const MAX_FLOOR_RATIO = 1.1
const MAX_CPU_US_PER_REQUEST = 30
const MAX_ADDED_P50_MS = 0.1
/** The routing table's per-user budget; bench/rate-limit-memory.ts holds the per-user limits to it too. */
export const MAX_BYTES_PER_USER = 2048
const MAX_STREAM_GROWTH_KB = 64 * 1024
/** The open-loop goals compare podgate with nginx + Lua at this share of nginx + Lua's saturation rate. */
const OPEN_LOOP_GOAL_SHARE = 0.5
const MAX_OPEN_LOOP_P50_RATIO = 1.3
const MAX_OPEN_LOOP_P99_RATIO = 1.5

export function evaluateGoals (results: readonly PathResult[]): GoalResult[] {
  const byId = new Map(results.filter((result) => result.status === 'ok').map((result) => [result.id, result]))
  const rps = (id: string): number | undefined => byId.get(id)?.throughput?.rps.median
  const usersPaths = [...byId.keys()].filter((id) => id.startsWith(USERS_PATH_PREFIX)).map((id) => Number(id.slice(USERS_PATH_PREFIX.length))).sort((a, b) => a - b)
  const mostUsers = usersPaths.length > 1 ? usersPaths[usersPaths.length - 1] : undefined
  const streamed = byId.get('podgate-hs256')?.stream
  const atHalfLoad = (id: string): OpenLoopRate | undefined => byId.get(id)?.openLoop?.rates.find((rate) => rate.share === OPEN_LOOP_GOAL_SHARE)
  const [podgateOpen, nginxOpen] = [atHalfLoad('podgate-hs256'), atHalfLoad(OPEN_LOOP_REFERENCE)]
  const openLoopCaveat = ([['podgate', podgateOpen], ['nginx + Lua', nginxOpen]] as const)
    .flatMap(([name, rate]) => rate === undefined || rate.held ? [] : [`; ${name} did not hold the rate`]).join('')
  const floorOpen = atHalfLoad(FLOOR)
  const openLoopRate = nginxOpen === undefined ? '' : `; ${Math.round(nginxOpen.offeredRps).toLocaleString('en-US')} req/s offered`
  const floorRatio = (pick: (rate: OpenLoopRate) => number): string => floorOpen === undefined || nginxOpen === undefined || !(pick(nginxOpen) > 0) ? '' : `; ${FLOOR}: ${(pick(floorOpen) / pick(nginxOpen)).toFixed(2)}×`
  // How busy each proxy's core was: queueing, and so the latency ratios, grow with it.
  const busyShares = ([['podgate', podgateOpen], ['nginx + Lua', nginxOpen], [FLOOR, floorOpen]] as const)
    .flatMap(([name, rate]) => rate?.busyPct === undefined || rate.busyPct === null ? [] : [`${name} ${rate.busyPct.median.toFixed(0)}%`])
  const openLoopBusy = busyShares.length === 0 ? '' : `; proxy busy: ${busyShares.join(', ')}`
  const openLoopMissing = results.flatMap((result) => result.notMeasured?.openloop ?? [])[0]
  const load = `${OPEN_LOOP_GOAL_SHARE * 100}% of nginx + Lua's saturation rate`
  const windowed = (id: string): number | undefined => byId.get(id)?.websocketWindow?.messagesPerS.median
  const cpu = (id: string): number | undefined => byId.get(id)?.throughput?.cpuUsPerRequest?.median
  return [
    atMost('podgate CPU per request, HS256 cache on', MAX_CPU_US_PER_REQUEST, 'µs', cpu('podgate-hs256'), { name: FLOOR, value: cpu(FLOOR) }),
    gapToFloor(cpu('podgate-hs256'), cpu(FLOOR), cpu(WIRE_FLOOR)),
    ratio('podgate (cache on) vs configurable-http-proxy, req/s', 3, rps('podgate-hs256'), rps('chp')),
    ratio('podgate (cache on) vs nginx + Lua cached verification, req/s', 0.6, rps('podgate-hs256'), rps('nginx-lua-cached')),
    ratio('podgate (cache off) vs nginx + Lua verifying every request, req/s', 0.5, rps('podgate-hs256-nocache'), rps('nginx-lua-keepalive')),
    atMost('p50 latency added over direct at 1 connection', MAX_ADDED_P50_MS, 'ms', difference(byId.get('podgate-hs256')?.latency?.p50Ms.median, byId.get('direct')?.latency?.p50Ms.median),
      { name: FLOOR, value: difference(byId.get(FLOOR)?.latency?.p50Ms.median, byId.get('direct')?.latency?.p50Ms.median) }),
    ratio(`${(mostUsers ?? 100_000).toLocaleString('en-US')} users routable vs 1, req/s`, 0.95, mostUsers === undefined ? undefined : rps(`${USERS_PATH_PREFIX}${mostUsers}`), rps(`${USERS_PATH_PREFIX}1`)),
    atMost('RSS growth per routable user', MAX_BYTES_PER_USER, 'bytes', mostUsers === undefined ? undefined : bytesPerUser(byId.get(`${USERS_PATH_PREFIX}1`), byId.get(`${USERS_PATH_PREFIX}${mostUsers}`), mostUsers)),
    ratio('WebSocket messages/s through podgate vs direct', 0.8, byId.get('podgate-hs256')?.websocket?.messagesPerS.median, byId.get('direct')?.websocket?.messagesPerS.median,
      { name: 'nginx', value: byId.get('nginx-keepalive')?.websocket?.messagesPerS.median }),
    ratioAtMost(`open-loop p50 at ${load}, podgate vs nginx + Lua cached verification`, MAX_OPEN_LOOP_P50_RATIO, podgateOpen?.p50Ms.median, nginxOpen?.p50Ms.median, openLoopMissing, openLoopRate + floorRatio((rate) => rate.p50Ms.median) + openLoopBusy + openLoopCaveat),
    ratioAtMost(`open-loop p99 at ${load}, podgate vs nginx + Lua cached verification`, MAX_OPEN_LOOP_P99_RATIO, podgateOpen?.p99Ms.median, nginxOpen?.p99Ms.median, openLoopMissing, openLoopRate + floorRatio((rate) => rate.p99Ms.median) + openLoopBusy + openLoopCaveat),
    relayRatio(windowed('podgate-hs256'), windowed('nginx-keepalive'), windowed('direct')),
    atMost(`${streamed === undefined ? '1 GiB' : formatBytes(streamed.bytes)} streamed body: proxy RSS growth (flat memory)`, MAX_STREAM_GROWTH_KB / 1024, 'MiB', streamed === undefined ? undefined : difference(streamed.peakRssKb, streamed.rssBeforeKb, 1 / 1024)),
  ]
}

/** `also`: another path's ratio to the same reference in the same run, shown beside. */
function ratio (goal: string, minimum: number, value: number | undefined, reference: number | undefined, also?: { readonly name: string, readonly value: number | undefined }): GoalResult {
  const target = `≥ ${minimum}×`
  if (value === undefined || reference === undefined || reference === 0) return { goal, target, measured: 'not measured', status: 'SKIP' }
  const measured = value / reference
  const beside = also?.value === undefined ? '' : `; ${also.name}: ${(also.value / reference).toFixed(2)}×`
  return { goal, target, measured: `${measured.toFixed(2)}× (${Math.round(value)} / ${Math.round(reference)}${beside})`, status: measured >= minimum ? 'PASS' : 'FAIL' }
}

/** value / reference at most `maximum`, for latencies in ms; `missing` says why neither was measured, `caveat` what to doubt. */
function ratioAtMost (goal: string, maximum: number, value: number | undefined, reference: number | undefined, missing: string | undefined, caveat: string): GoalResult {
  const target = `≤ ${maximum}×`
  if (value === undefined || reference === undefined || !(reference > 0)) return { goal, target, measured: missing === undefined ? 'not measured' : `not measured: ${missing}`, status: 'SKIP' }
  const measured = value / reference
  return { goal, target, measured: `${measured.toFixed(2)}× (${value.toFixed(3)} / ${reference.toFixed(3)} ms${caveat})`, status: measured <= maximum ? 'PASS' : 'FAIL' }
}

/** podgate's CPU per request against the floor's; beside it, how much of the gap the default request headers are on their own. */
function gapToFloor (podgate: number | undefined, floor: number | undefined, wire: number | undefined): GoalResult {
  const goal = `podgate CPU per request vs the Node floor (${FLOOR}), every default feature on`
  const target = `≤ ${MAX_FLOOR_RATIO}×`
  if (podgate === undefined || floor === undefined || !(floor > 0)) return { goal, target, measured: 'not measured', status: 'SKIP' }
  const measured = podgate / floor
  const beside = wire === undefined || !(wire > 0)
    ? ''
    : `; ${WIRE_FLOOR}, the floor sending podgate's default request headers: ${wire.toFixed(1)} µs, ${(wire / floor).toFixed(2)}× the floor, podgate ${(podgate / wire).toFixed(2)}× it`
  return { goal, target, measured: `${measured.toFixed(2)}× (${podgate.toFixed(1)} / ${floor.toFixed(1)} µs${beside})`, status: measured <= MAX_FLOOR_RATIO ? 'PASS' : 'FAIL' }
}

/** podgate relays WebSocket messages at no lower a share of direct's rate than nginx does, in the same run. */
function relayRatio (podgate: number | undefined, nginx: number | undefined, direct: number | undefined): GoalResult {
  const goal = 'WebSocket messages/s with several in flight per connection, vs direct: podgate vs nginx'
  const target = '≥ nginx\'s ratio'
  if (podgate === undefined || nginx === undefined || direct === undefined || !(direct > 0)) return { goal, target, measured: 'not measured', status: 'SKIP' }
  const [mine, theirs] = [podgate / direct, nginx / direct]
  return { goal, target, measured: `${mine.toFixed(2)}× vs ${theirs.toFixed(2)}× (${Math.round(podgate)}, ${Math.round(nginx)} / ${Math.round(direct)})`, status: mine >= theirs ? 'PASS' : 'FAIL' }
}

/** `floor`: the same measure of a reference in the same run (the Node floor), shown beside a miss's number as its measured reason. */
function atMost (goal: string, maximum: number, unit: string, value: number | undefined | null, floor?: { readonly name: string, readonly value: number | undefined | null }): GoalResult {
  const target = `≤ ${maximum} ${unit}`
  if (value === undefined || value === null || !Number.isFinite(value)) return { goal, target, measured: 'not measured', status: 'SKIP' }
  const beside = floor?.value === undefined || floor.value === null || !Number.isFinite(floor.value) ? '' : ` (${floor.name}: ${round(floor.value)} ${unit})`
  return { goal, target, measured: `${round(value)} ${unit}${beside}`, status: value <= maximum ? 'PASS' : 'FAIL' }
}

function difference (value: number | null | undefined, reference: number | null | undefined, scale = 1): number | undefined {
  return value === null || value === undefined || reference === null || reference === undefined ? undefined : (value - reference) * scale
}

function bytesPerUser (one: PathResult | undefined, many: PathResult | undefined, users: number): number | undefined {
  const grown = difference(many?.idleRssKb, one?.idleRssKb, 1024)
  return grown === undefined ? undefined : grown / (users - 1)
}

function round (value: number): string {
  return Math.abs(value) >= 100 ? value.toFixed(0) : Math.abs(value) >= 1 ? value.toFixed(1) : value.toFixed(3)
}

export function formatBytes (bytes: number): string {
  return bytes >= 1024 ** 3 ? `${Number((bytes / 1024 ** 3).toFixed(1))} GiB` : `${Number((bytes / 1024 ** 2).toFixed(1))} MiB`
}
