{{/* The chart's name, and the name of the release's objects. */}}
{{- define "daas.name" -}}
{{- .Chart.Name | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "daas.fullname" -}}
{{- if contains .Chart.Name .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}

{{/* Labels of every object; selectorLabels pick the portal's pods. */}}
{{- define "daas.selectorLabels" -}}
app.kubernetes.io/name: {{ include "daas.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: portal
{{- end }}

{{- define "daas.labels" -}}
{{ include "daas.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
{{- end }}

{{/* The session namespace. */}}
{{- define "daas.sessionsNamespace" -}}
{{- default .Release.Namespace .Values.sessions.namespace }}
{{- end }}

{{/* The Secret holding DATABASE_URL. */}}
{{- define "daas.databaseSecret" -}}
{{- default (printf "%s-database" (include "daas.fullname" .)) .Values.database.existingSecret }}
{{- end }}

{{- define "daas.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}

{{/* The container security context of the portal and its migrations. */}}
{{- define "daas.containerSecurityContext" -}}
runAsNonRoot: true
privileged: false
allowPrivilegeEscalation: false
readOnlyRootFilesystem: true
capabilities:
  drop: ["ALL"]
{{- end }}

{{- define "daas.podSecurityContext" -}}
runAsNonRoot: true
runAsUser: 10001
runAsGroup: 10001
seccompProfile:
  type: RuntimeDefault
{{- end }}
