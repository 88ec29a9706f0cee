{{/* Chart name, truncated to 63 characters (a DNS label). */}}
{{- define "cache-gateway.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Release-qualified name. */}}
{{- define "cache-gateway.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{- define "cache-gateway.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Standard labels (helm.sh chart best practices). */}}
{{- define "cache-gateway.labels" -}}
helm.sh/chart: {{ include "cache-gateway.chart" . }}
{{ include "cache-gateway.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{- define "cache-gateway.selectorLabels" -}}
app.kubernetes.io/name: {{ include "cache-gateway.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "cache-gateway.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "cache-gateway.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/* The Secret holding the gateway's secrets: the operator's, or the chart's. */}}
{{- define "cache-gateway.secretName" -}}
{{- default (include "cache-gateway.fullname" .) .Values.existingSecret }}
{{- end }}

{{/* Whether an API keys file is mounted. */}}
{{- define "cache-gateway.apiKeysFile" -}}
{{- if or .Values.existingSecret (gt (len .Values.secret.apiKeys) 0) }}true{{- end }}
{{- end }}
