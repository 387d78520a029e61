{{/* Chart name, overridable. */}}
{{- define "quotestream.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Prefix of every object name: the release name when it already says "quotestream", otherwise
"<release>-quotestream". The operator objects add "-operator" (release "quotestream" gives the
ServiceAccount quotestream-operator).
*/}}
{{- define "quotestream.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 54 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 54 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 54 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{/* Name of the operator's Deployment, Service, roles and default Lease. */}}
{{- define "quotestream.operatorName" -}}
{{- printf "%s-operator" (include "quotestream.fullname" .) }}
{{- end }}

{{- define "quotestream.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Labels on every object. */}}
{{- define "quotestream.labels" -}}
helm.sh/chart: {{ include "quotestream.chart" . }}
{{ include "quotestream.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: quotestream
{{- end }}

{{/* Labels that select the operator's pods (immutable in the Deployment selector). */}}
{{- define "quotestream.selectorLabels" -}}
app.kubernetes.io/name: {{ include "quotestream.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: operator
{{- end }}

{{- define "quotestream.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "quotestream.operatorName" .) .Values.serviceAccount.name }}
{{- else }}
{{- required "serviceAccount.name is required when serviceAccount.create is false: name the existing ServiceAccount the operator runs as" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "quotestream.leaseName" -}}
{{- default (include "quotestream.operatorName" .) .Values.leaderElection.leaseName }}
{{- end }}

{{/* The example's namespace: its own setting, else the watched namespace, else the release's. */}}
{{- define "quotestream.exampleNamespace" -}}
{{- .Values.example.namespace | default .Values.watchNamespace | default .Release.Namespace }}
{{- end }}

{{- define "quotestream.operatorImage" -}}
{{- printf "%s:%s" .Values.image.operator.repository (default .Chart.AppVersion .Values.image.operator.tag) }}
{{- end }}

{{- define "quotestream.workerImage" -}}
{{- printf "%s:%s" .Values.image.worker.repository (default .Chart.AppVersion .Values.image.worker.tag) }}
{{- end }}

{{/*
Checks across values that the schema cannot express with a useful message. Included by the
Deployment, so `helm template/install/lint` stop here.
*/}}
{{- define "quotestream.validate" -}}
{{- if and (not .Values.leaderElection.enabled) (gt (int .Values.replicaCount) 1) }}
{{- fail (printf "replicaCount is %d but leaderElection.enabled is false: two active operators would fight over the same objects. Set replicaCount=1 or leaderElection.enabled=true" (int .Values.replicaCount)) }}
{{- end }}
{{- end }}

{{/*
The namespaced rules of the operator, shared by the ClusterRole (watchNamespace "") and the
Role in the watched namespace. Why each rule exists:
- quotestreams: watch the desired state. No update/patch: the operator never changes a spec and
  uses no finalizers (deletion cascades through ownerReferences and the garbage collector).
- quotestreams/status: readyShards, conditions, per-shard summary.
- quotestreams/finalizers update: only the OwnerReferencesPermissionEnforcement admission
  plugin (on in OpenShift) checks it, because the shard objects' ownerReference sets
  blockOwnerDeletion; it grants nothing else (there is no such subresource to call).
- quotestreams/scale get: reads the replica count the scale subresource exposes.
- deployments, configmaps: the shard objects (server-side apply, delete on scale-down) and the
  tickersFrom lists; there is no way to scope RBAC by label, so this covers every ConfigMap in
  the watched namespaces.
- jobs (batch): the spec.history backfill Jobs: create, watch, patch (the recorded mark),
  delete (history switched off); no update.
- pods: get/list/watch only, to read termination messages: a failed backfill Job's (by its
  job-name label) and a worker's that cannot start (by the stream label).
- events (core and events.k8s.io): create/patch only, for kubectl describe.
- no secrets: the operator never reads one (workers get theirs through secretKeyRef).
*/}}
{{/* Egress to cluster DNS (any namespace; kube-dns/CoreDNS listen on 53). */}}
{{- define "quotestream.dnsEgress" -}}
- ports:
    - port: 53
      protocol: UDP
    - port: 53
      protocol: TCP
{{- end }}

{{- define "quotestream.namespacedRules" -}}
- apiGroups: [quotes.opa.io]
  resources: [quotestreams]
  verbs: [get, list, watch]
- apiGroups: [quotes.opa.io]
  resources: [quotestreams/status]
  verbs: [get, patch, update]
- apiGroups: [quotes.opa.io]
  resources: [quotestreams/scale]
  verbs: [get]
- apiGroups: [quotes.opa.io]
  resources: [quotestreams/finalizers]
  verbs: [update]
- apiGroups: [apps]
  resources: [deployments]
  verbs: [get, list, watch, create, patch, update, delete]
- apiGroups: [""]
  resources: [configmaps]
  verbs: [get, list, watch, create, patch, update, delete]
# spec.history: the backfill Jobs (created, watched for their outcome, marked recorded,
# deleted when history is switched off).
- apiGroups: [batch]
  resources: [jobs]
  verbs: [get, list, watch, create, patch, delete]
- apiGroups: ["", events.k8s.io]
  resources: [events]
  verbs: [create, patch]
# Pods, read only: a failed backfill Job's termination message, and a worker's that cannot
# start (lastState.terminated.message), which the operator puts in the stream's Degraded
# condition (watched, so the status shows it at once).
- apiGroups: [""]
  resources: [pods]
  verbs: [get, list, watch]
{{- if .Values.policy.secrets.requireLabel }}
# The Secret policy reads the labels of the Secrets a stream names, one by name (metadata-only
# requests); no list or watch, so the operator cannot enumerate Secrets.
- apiGroups: [""]
  resources: [secrets]
  verbs: [get]
{{- end }}
{{- end }}
