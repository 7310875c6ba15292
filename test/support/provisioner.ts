// Fast timings for a Kubernetes provisioner under test: a short Lease, quick retries and
// informer restarts, so leadership and recovery happen within a test's patience.
import type { KubernetesProvisionerOptions } from '../../src/controller/provisioner.ts'

export const FAST_PROVISIONER_TIMINGS = Object.freeze({
  leaseDurationMs: 1_500,
  renewIntervalMs: 200,
  retryIntervalMs: 100,
  renewDeadlineMs: 1_000,
  retryBackoff: { initialMs: 10, maxMs: 200 },
  informerBackoff: { initialMs: 20, maxMs: 200 },
  watchdogMs: 10_000,
  requestTimeoutMs: 5_000,
} satisfies Partial<KubernetesProvisionerOptions>)
