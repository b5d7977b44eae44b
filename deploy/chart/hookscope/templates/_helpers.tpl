{{/*
The agent's name: <release>-agent, or fullnameOverride.
*/}}
{{- define "hookscope.fullname" -}}
{{- default (printf "%s-agent" .Release.Name) .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/*
Labels that select the agent's pods. Fixed for the life of a release: a
DaemonSet's selector cannot change.
*/}}
{{- define "hookscope.selectorLabels" -}}
app.kubernetes.io/name: hookscope-agent
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{/*
Labels on every object.
*/}}
{{- define "hookscope.labels" -}}
{{ include "hookscope.selectorLabels" . }}
app.kubernetes.io/part-of: hookscope
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
{{- end -}}

{{- define "hookscope.image" -}}
{{ .Values.image.repository }}:{{ default .Chart.AppVersion .Values.image.tag }}
{{- end -}}
