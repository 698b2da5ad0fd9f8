{{/* Names and labels shared by every template. */}}

{{/* The chart name, overridable. */}}
{{- define "shardmesh.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* RELEASE-shardmesh, or just RELEASE when it already contains the chart name. */}}
{{- define "shardmesh.fullname" -}}
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

{{/* The operator's object name. */}}
{{- define "shardmesh.operatorName" -}}
{{- printf "%s-operator" (include "shardmesh.fullname" .) | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* chart label value: name-version. */}}
{{- define "shardmesh.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Labels on every object. */}}
{{- define "shardmesh.labels" -}}
helm.sh/chart: {{ include "shardmesh.chart" . }}
app.kubernetes.io/name: {{ include "shardmesh.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: shardmesh
{{- end }}

{{/* Selector labels of the operator pods (immutable: never add to them). */}}
{{- define "shardmesh.operatorSelectorLabels" -}}
app.kubernetes.io/name: {{ include "shardmesh.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: operator
{{- end }}

{{/* The ServiceAccount the operator runs as. */}}
{{- define "shardmesh.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "shardmesh.operatorName" .) .Values.serviceAccount.name }}
{{- else }}
{{- required "serviceAccount.name is required when serviceAccount.create is false" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/* image reference: repository:tag, the tag defaulting to appVersion. */}}
{{- define "shardmesh.image" -}}
{{- printf "%s:%s" .image.repository (default .chart.AppVersion .image.tag) }}
{{- end }}

{{/*
True (non-empty) when the monitoring.coreos.com/v1 objects may be rendered:
the cluster serves the API, or the user said to assume it.
*/}}
{{- define "shardmesh.monitoringAPI" -}}
{{- if or (.Capabilities.APIVersions.Has "monitoring.coreos.com/v1") .Values.monitoring.assumeCRDs }}true{{ end }}
{{- end }}

{{/* Labels on every monitoring object. */}}
{{- define "shardmesh.monitoringLabels" -}}
{{ include "shardmesh.labels" . }}
{{- with .Values.monitoring.labels }}
{{ toYaml . }}
{{- end }}
{{- end }}
