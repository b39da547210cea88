{{/* Names and labels shared by every template. */}}
{{- define "mvconf.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "mvconf.selectorLabels" -}}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "mvconf.labels" -}}
{{ include "mvconf.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}

{{- define "mvconf.serviceAccountName" -}}
{{- default (include "mvconf.fullname" .) .Values.serviceAccount.name -}}
{{- end -}}

{{/* The rules the operator needs on MacvlanBindings and Events, and on the Secrets it is told about. */}}
{{- define "mvconf.bindingRules" -}}
- apiGroups: ["mvconf.io"]
  resources: ["macvlanbindings"]
  verbs: ["get", "list", "watch", "patch", "update"]
- apiGroups: ["mvconf.io"]
  resources: ["macvlanbindings/status"]
  verbs: ["get", "patch", "update"]
# Each binding's per-container records, owned by it.
- apiGroups: ["mvconf.io"]
  resources: ["macvlanendpointslices"]
  verbs: ["get", "list", "watch", "create", "update", "delete"]
- apiGroups: ["events.k8s.io"]
  resources: ["events"]
  verbs: ["create", "patch"]
{{- if .Values.secrets.names }}
- apiGroups: [""]
  resources: ["secrets"]
  resourceNames: {{ toJson .Values.secrets.names }}
  verbs: ["get"]
{{- end }}
{{- end -}}
