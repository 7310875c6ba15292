// A "path" is one way for a request to reach the upstream (direct, podgate, nginx, CHP).
// Each path module only knows how to start its proxy; measure.ts runs every path the same way.
import type { AuthServiceProbe } from '../auth-service.ts'
import type { CpuPlan } from '../machine.ts'
import type { Prerequisites } from '../prerequisites.ts'
import type { ProcessGroup } from '../processes.ts'
import type { Upstream } from '../upstream.ts'

/** 'websocket' keeps one message in flight per connection (the round trip), 'websocket-window' several (the relay's throughput). */
export type Measure = 'throughput' | 'latency' | 'websocket' | 'websocket-window' | 'openloop' | 'stream'

export interface PathContext {
  readonly repoDir: string
  readonly benchDir: string
  /** Scratch directory for configs and route files, removed after the run. */
  readonly workDir: string
  /** This path's own processes; all stopped when the path is done. */
  readonly processes: ProcessGroup
  readonly cpus: CpuPlan
  readonly upstream: Upstream
  readonly prerequisites: Prerequisites
  readonly log: (line: string) => void
}

export interface RunningPath {
  /** Origin plus any routing prefix; measures append /fixed, /ws, /echo. */
  readonly baseUrl: string
  /** Load requests cycle through these; WebSocket and stream use the first. */
  readonly headerSets: ReadonlyArray<Record<string, string>>
  /** Process group whose CPU and memory are the proxy's cost; undefined for the direct path. */
  readonly proxyPgid: number | undefined
  /** The auth service the proxy asks, if any: its calls are counted after the last run and checked against `expect`. */
  readonly authService?: AuthServiceProbe | undefined
}

export interface BenchPath {
  readonly id: string
  readonly title: string
  readonly measures: readonly Measure[]
  /** Why the path cannot run on this machine (after trying to install what it needs), or undefined. */
  readonly unavailable?: (context: PathContext) => Promise<string | undefined>
  readonly start: (context: PathContext) => Promise<RunningPath>
}
