// The user-id rule now lives in ../kube/labels.ts. This alias remains only for importers
// being reshaped elsewhere (controller/kubernetes-workloads.ts, controller/user-workload.ts,
// workloads/workloads.ts, discovery/routes-file.ts); delete it once they import from there.
export { isDnsLabel as isValidUserId } from '../kube/labels.ts'
