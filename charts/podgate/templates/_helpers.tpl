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
