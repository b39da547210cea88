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

{{/* The operator's arguments: the Deployment's, and the `helm test` check's. */}}
{{- define "mvconf.operatorArgs" -}}
{{- $local := eq .Values.endpoint.kind "local" -}}
- operator
- --endpoint-kind={{ .Values.endpoint.kind }}
{{- if and (not $local) .Values.endpoint.url }}
- --endpoint-url={{ .Values.endpoint.url }}
{{- end }}
- --dce-node-prefix={{ .Values.endpoint.dceNodePrefix }}
{{- if .Values.endpoint.nodePort }}
- --node-port={{ .Values.endpoint.nodePort }}
{{- end }}
{{- if .Values.endpoint.apiVersion }}
- --api-version={{ .Values.endpoint.apiVersion }}
{{- end }}
{{- if .Values.credentials.existingSecret }}
- --credentials-secret={{ .Values.credentials.existingSecret }}
{{- end }}
{{- if .Values.tls.insecureSkipVerify }}
- --insecure-skip-tls-verify
{{- end }}
{{- if .Values.watchNamespaces }}
- --namespace={{ join "," .Values.watchNamespaces }}
{{- end }}
- --concurrency={{ .Values.concurrency }}
- --resync-seconds={{ .Values.resyncSeconds }}
- --release-cooldown-seconds={{ .Values.releaseCooldownSeconds }}
{{- if .Values.probe.enabled }}
- --probe-image={{ .Values.probe.image | default (printf "%s:%s" .Values.image.repository (.Values.image.tag | default .Chart.AppVersion)) }}
- --probe-recheck-seconds={{ .Values.probe.recheckSeconds }}
{{- end }}
- --metrics-addr=0.0.0.0:{{ .Values.metrics.port }}
- --leader-election={{ .Values.leaderElection.enabled }}
- --lease-name={{ .Values.leaderElection.leaseName }}
- --leadership={{ .Values.leaderElection.leadership }}
- --inline={{ if eq .Values.tenancy.mode "multi" }}deny{{ else }}allow{{ end }}
- --log-format={{ .Values.logFormat }}
{{- end -}}
