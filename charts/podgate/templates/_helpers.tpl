{{/* Chart name, overridable. */}}
{{- define "podgate.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* Full name of the release's resources: <release>-podgate, or <release> when it already says podgate. */}}
{{- define "podgate.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- $name := default .Chart.Name .Values.nameOverride -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{- define "podgate.selectorLabels" -}}
app.kubernetes.io/name: {{ include "podgate.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "podgate.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{ include "podgate.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/part-of: podgate
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end -}}

{{- define "podgate.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "podgate.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{/* The Secret holding the JWT secret and the admin token: the user's, or the chart's. */}}
{{- define "podgate.secretName" -}}
{{- default (include "podgate.fullname" .) .Values.existingSecret.name -}}
{{- end -}}

{{- define "podgate.image" -}}
{{- if .Values.image.digest -}}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest -}}
{{- else -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) -}}
{{- end -}}
{{- end -}}

{{/* Which key source verifies tokens: jwks, public-key or secret (mirrors src/config.ts). */}}
{{- define "podgate.keySource" -}}
{{- if and .Values.auth.jwksUrl .Values.auth.publicKey -}}
{{- fail "auth.jwksUrl and auth.publicKey are both set: podgate verifies tokens with exactly one key source" -}}
{{- else if .Values.auth.jwksUrl -}}
jwks
{{- else if .Values.auth.publicKey -}}
public-key
{{- else -}}
secret
{{- end -}}
{{- end -}}

{{/* Grace period: explicit, or the drain time plus a margin for the process to exit. */}}
{{- define "podgate.terminationGracePeriodSeconds" -}}
{{- $drain := int .Values.config.drainTimeoutSeconds -}}
{{- if kindIs "invalid" .Values.terminationGracePeriodSeconds -}}
{{- add $drain 10 -}}
{{- else if le (int .Values.terminationGracePeriodSeconds) $drain -}}
{{- fail (printf "terminationGracePeriodSeconds (%d) must exceed config.drainTimeoutSeconds (%d), or Kubernetes kills podgate mid-drain" (int .Values.terminationGracePeriodSeconds) $drain) -}}
{{- else -}}
{{- int .Values.terminationGracePeriodSeconds -}}
{{- end -}}
{{- end -}}

{{/*
A duration value in milliseconds, read as podgate reads it (src/config.ts parseDuration): 500ms,
30s, 10m, 1h or bare seconds, rounded to a whole millisecond. The schema has already checked the
form; an empty value is 0.
*/}}
{{- define "podgate.durationMs" -}}
{{- $text := toString . | trim -}}
{{- if eq $text "" -}}
0
{{- else -}}
{{- $number := regexFind `^[0-9]+(\.[0-9]+)?` $text -}}
{{- $unit := trimPrefix $number $text | default "s" -}}
{{- $factor := get (dict "ms" 1 "s" 1000 "m" 60000 "h" 3600000) $unit -}}
{{- printf "%d" (round (mulf (float64 $number) $factor) 0 | int64) -}}
{{- end -}}
{{- end -}}

{{/* config.clientHeadersTimeout, refused below 1s as podgate refuses PODGATE_CLIENT_HEADERS_TIMEOUT. */}}
{{- define "podgate.clientHeadersTimeout" -}}
{{- $value := .Values.config.clientHeadersTimeout -}}
{{- if lt (int64 (include "podgate.durationMs" $value)) 1000 -}}
{{- fail (printf "config.clientHeadersTimeout (%s) must be at least 1s: it is the time a client has to send its request head (PODGATE_CLIENT_HEADERS_TIMEOUT)" $value) -}}
{{- end -}}
{{- $value -}}
{{- end -}}

{{/*
config.clientIdleTimeout when set: "0" (off) or longer than the longest wait podgate answers
itself, as podgate demands of PODGATE_CLIENT_IDLE_TIMEOUT. Empty is never rendered: podgate then
derives it from the same three timeouts.
*/}}
{{- define "podgate.clientIdleTimeout" -}}
{{- $value := .Values.config.clientIdleTimeout -}}
{{- $idle := int64 (include "podgate.durationMs" $value) -}}
{{- $longest := 0 -}}
{{- $longestName := "" -}}
{{- range $name := list "headersTimeout" "bodyTimeout" "startTimeout" -}}
{{- $ms := int64 (include "podgate.durationMs" (index $.Values.config $name)) -}}
{{- if gt $ms (int64 $longest) -}}
{{- $longest = $ms -}}
{{- $longestName = $name -}}
{{- end -}}
{{- end -}}
{{- if and (ne $idle 0) (le $idle (int64 $longest)) -}}
{{- fail (printf "config.clientIdleTimeout (%s) must be \"0\" (off), empty (podgate derives it), or longer than the longest wait podgate answers itself: config.%s (%s). Otherwise podgate refuses PODGATE_CLIENT_IDLE_TIMEOUT at start" $value $longestName (index .Values.config $longestName)) -}}
{{- end -}}
{{- $value -}}
{{- end -}}

{{/* auth.maxAge when set: at least 1s ("0" means no cap, as an empty value does), as podgate demands of PODGATE_JWT_MAX_AGE. */}}
{{- define "podgate.jwtMaxAge" -}}
{{- $value := .Values.auth.maxAge -}}
{{- $ms := int64 (include "podgate.durationMs" $value) -}}
{{- if and (gt $ms 0) (lt $ms 1000) -}}
{{- fail (printf "auth.maxAge (%s) must be at least 1s, or empty for no cap (PODGATE_JWT_MAX_AGE)" $value) -}}
{{- end -}}
{{- $value -}}
{{- end -}}

{{/*
config.namespaces checked as podgate checks PODGATE_NAMESPACES (src/config.ts readNamespaces):
"*" only alone and only with config.clusterScope. Renders PODGATE_NAMESPACES, "" when unset.
*/}}
{{- define "podgate.namespaces" -}}
{{- $namespaces := .Values.config.namespaces | default list -}}
{{- if has "*" $namespaces -}}
{{- if gt (len $namespaces) 1 -}}
{{- fail (printf "config.namespaces (%s): either [\"*\"] (every namespace) or a list of namespaces, not both (PODGATE_NAMESPACES)" (join "," $namespaces)) -}}
{{- end -}}
{{- if not .Values.config.clusterScope -}}
{{- fail "config.namespaces [\"*\"] watches EndpointSlices in every namespace and needs cluster-wide list/watch rights: set config.clusterScope=true to opt in (PODGATE_CLUSTER_SCOPE), or list the namespaces" -}}
{{- end -}}
{{- end -}}
{{- join "," $namespaces -}}
{{- end -}}

{{/* Where a new UserWorkload goes when no namespace is named: the first listed, else the release namespace (also for "*"). */}}
{{- define "podgate.defaultNamespace" -}}
{{- $namespaces := include "podgate.namespaces" . | splitList "," | compact -}}
{{- if and $namespaces (ne (first $namespaces) "*") -}}
{{- first $namespaces -}}
{{- else -}}
{{- .Release.Namespace -}}
{{- end -}}
{{- end -}}

{{/* The Roles in served namespaces and the ClusterRole for "*": one name per release, unique across namespaces. */}}
{{- define "podgate.servedRoleName" -}}
{{- printf "%s-%s" (include "podgate.fullname" .) .Release.Namespace -}}
{{- end -}}

{{/* Routing: the gateway's informer over the users' EndpointSlices, in every namespace it serves. */}}
{{- define "podgate.routingRules" -}}
# Routing: the gateway's informer over the users' EndpointSlices.
- apiGroups: ["discovery.k8s.io"]
  resources: ["endpointslices"]
  verbs: ["list", "watch"]
{{- end -}}

{{/* What the provisioner needs in every namespace it serves: routing, plus the UserWorkloads and their children there. */}}
{{- define "podgate.workloadRules" -}}
{{ include "podgate.routingRules" . }}
# Provisioning: the children of each UserWorkload (server-side apply is a patch).
- apiGroups: ["apps"]
  resources: ["deployments"]
  verbs: ["create", "get", "list", "watch", "patch", "delete"]
- apiGroups: [""]
  resources: ["services", "persistentvolumeclaims"]
  verbs: ["create", "get", "list", "watch", "patch", "delete"]
- apiGroups: ["networking.k8s.io"]
  resources: ["networkpolicies"]
  verbs: ["create", "get", "list", "watch", "patch", "delete"]
# Desired state: the admin API and spawn-on-demand create UserWorkloads; the leader writes status.
- apiGroups: ["podgate.dev"]
  resources: ["userworkloads"]
  verbs: ["create", "get", "list", "watch", "patch", "update", "delete"]
- apiGroups: ["podgate.dev"]
  resources: ["userworkloads/status"]
  verbs: ["get", "patch", "update"]
# Read-only, for the reason a workload is not ready (ImagePullBackOff, Unschedulable…).
- apiGroups: [""]
  resources: ["pods", "events"]
  verbs: ["get", "list", "watch"]
{{- end -}}

{{/* Leader election (one replica reconciles): only in the release namespace, wherever the tenants are. */}}
{{- define "podgate.leaseRules" -}}
# Leader election: one replica reconciles.
- apiGroups: ["coordination.k8s.io"]
  resources: ["leases"]
  verbs: ["get", "create", "update"]
{{- end -}}

{{/* A random value generated once: reused from the live Secret on upgrade (lookup is empty under helm template). */}}
{{- define "podgate.generatedSecretValue" -}}
{{- $root := index . 0 -}}
{{- $key := index . 1 -}}
{{- $live := lookup "v1" "Secret" $root.Release.Namespace (include "podgate.fullname" $root) -}}
{{- if and $live $live.data (hasKey $live.data $key) -}}
{{- index $live.data $key | b64dec -}}
{{- else -}}
{{- randAlphaNum 48 -}}
{{- end -}}
{{- end -}}

{{/* Where the identity Secret's keys are mounted; not under /etc/podgate, the profiles' ConfigMap. */}}
{{- define "podgate.identityDir" -}}
/etc/podgate-identity
{{- end -}}

{{/* identity.key, once identity.existingSecret is known to name the Secret that holds it. */}}
{{- define "podgate.identitySecretKey" -}}
{{- if not .Values.identity.existingSecret -}}
{{- fail "identity.enabled needs identity.existingSecret: the name of a Secret holding the signing key, e.g. openssl genpkey -algorithm ed25519 -out identity.pem && kubectl create secret generic podgate-identity --from-file=identity.pem" -}}
{{- end -}}
{{- .Values.identity.key -}}
{{- end -}}

{{/* PODGATE_IDENTITY_PUBLISHED_KEYS: the mounted paths of identity.publishedKeys, comma-separated. */}}
{{- define "podgate.identityPublishedPaths" -}}
{{- $dir := include "podgate.identityDir" . -}}
{{- $paths := list -}}
{{- range .Values.identity.publishedKeys -}}
{{- $paths = append $paths (printf "%s/%s" $dir .) -}}
{{- end -}}
{{- join "," $paths -}}
{{- end -}}

{{/* Where users' pods fetch the identity keys in the cluster: the admin port of podgate's Service. */}}
{{- define "podgate.identityJwksUrl" -}}
{{- printf "http://%s.%s.svc:%d/.well-known/jwks.json" (include "podgate.fullname" .) .Release.Namespace (int .Values.service.adminPort) -}}
{{- end -}}
