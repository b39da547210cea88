{{/* Names and labels shared by every template.

Values added after chart 0.1.0 are read with `dig` and a default where a
missing value would fail or mean something else: `helm upgrade
--reuse-values` from a 0.1.0 release renders with that release's values,
which lack them (scripts/chart-check runs such an upgrade). */}}
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
{{- /* int64: a number from a values file is a float, printed 1e+06 when large. */}}
- --concurrency={{ .Values.concurrency | int64 }}
- --resync-seconds={{ .Values.resyncSeconds | int64 }}
- --release-cooldown-seconds={{ dig "releaseCooldownSeconds" 5 .Values.AsMap | int64 }}
{{- if dig "probe" "enabled" true .Values.AsMap }}
- --probe-image={{ dig "probe" "image" "" .Values.AsMap | default (printf "%s:%s" .Values.image.repository (.Values.image.tag | default .Chart.AppVersion)) }}
- --probe-recheck-seconds={{ dig "probe" "recheckSeconds" 60 .Values.AsMap | int64 }}
{{- end }}
- --metrics-addr=0.0.0.0:{{ .Values.metrics.port }}
- --leader-election={{ .Values.leaderElection.enabled }}
- --lease-name={{ .Values.leaderElection.leaseName }}
- --leadership={{ .Values.leaderElection.leadership }}
- --inline={{ if eq .Values.tenancy.mode "multi" }}deny{{ else }}allow{{ end }}
- --log-format={{ .Values.logFormat }}
{{- range .Values.extraArgs }}
- {{ . | quote }}
{{- end }}
{{- end -}}

{{/* The pods' nodeSelector: nodeSelector, and in local mode the swarm
managers' label (none after an upgrade that reuses 0.1.0's values, which
did not select: its pods keep their nodes). */}}
{{- define "mvconf.nodeSelector" -}}
{{- $selector := deepCopy (.Values.nodeSelector | default dict) -}}
{{- $label := dig "endpoint" "managerNodeLabel" "" .Values.AsMap -}}
{{- if and (eq .Values.endpoint.kind "local") $label -}}
{{- $kv := splitn "=" 2 $label -}}
{{- $_ := set $selector $kv._0 (toString $kv._1) -}}
{{- end -}}
{{- with $selector }}{{ toYaml . }}{{ end -}}
{{- end -}}

{{/* The operator's affinity: affinity, and podAntiAffinity's rule keeping
the replicas on different nodes unless affinity has its own. */}}
{{- define "mvconf.affinity" -}}
{{- $affinity := deepCopy (.Values.affinity | default dict) -}}
{{- $anti := .Values.podAntiAffinity | default "preferred" -}}
{{- if and (ne $anti "none") (not (hasKey $affinity "podAntiAffinity")) -}}
{{- $term := dict "topologyKey" "kubernetes.io/hostname" "labelSelector" (dict "matchLabels" (include "mvconf.selectorLabels" . | fromYaml)) -}}
{{- if eq $anti "required" -}}
{{- $_ := set $affinity "podAntiAffinity" (dict "requiredDuringSchedulingIgnoredDuringExecution" (list $term)) -}}
{{- else -}}
{{- $_ := set $affinity "podAntiAffinity" (dict "preferredDuringSchedulingIgnoredDuringExecution" (list (dict "weight" 100 "podAffinityTerm" $term))) -}}
{{- end -}}
{{- end -}}
{{- with $affinity }}{{ toYaml . }}{{ end -}}
{{- end -}}

{{/* topologySpreadConstraints, each selecting the operator's pods unless it says otherwise. */}}
{{- define "mvconf.topologySpreadConstraints" -}}
{{- $constraints := list -}}
{{- range .Values.topologySpreadConstraints -}}
{{- $c := deepCopy . -}}
{{- if not (hasKey $c "labelSelector") -}}
{{- $_ := set $c "labelSelector" (dict "matchLabels" (include "mvconf.selectorLabels" $ | fromYaml)) -}}
{{- end -}}
{{- $constraints = append $constraints $c -}}
{{- end -}}
{{- with $constraints }}{{ toYaml . }}{{ end -}}
{{- end -}}
