{{/*
The chart name, or nameOverride. Truncated to 63 characters (the DNS-1123 label limit of some name fields).
*/}}
{{- define "rds-export-operator.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
The full name: fullnameOverride, else the release name if it already contains the chart name, else
"<release>-<chart>". It names every object of the release (and the leader election Lease), so the cluster-scoped
ClusterRole and ClusterRoleBinding are unique per release.
*/}}
{{- define "rds-export-operator.fullname" -}}
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

{{/*
Chart name and version, for the helm.sh/chart label.
*/}}
{{- define "rds-export-operator.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Labels on every object.
*/}}
{{- define "rds-export-operator.labels" -}}
helm.sh/chart: {{ include "rds-export-operator.chart" . }}
{{ include "rds-export-operator.selectorLabels" . }}
app.kubernetes.io/version: {{ .Values.image.tag | default .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/component: operator
{{- end }}

{{/*
Selector labels: stable for the life of a release (a Deployment's selector is immutable).
*/}}
{{- define "rds-export-operator.selectorLabels" -}}
app.kubernetes.io/name: {{ include "rds-export-operator.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{/*
The ServiceAccount the operator runs as: serviceAccount.name, else the fullname (whether the chart creates it or
not; the RBAC bindings name the same account either way).
*/}}
{{- define "rds-export-operator.serviceAccountName" -}}
{{- default (include "rds-export-operator.fullname" .) .Values.serviceAccount.name }}
{{- end }}

{{/*
The container image reference: repository@digest when image.digest is set, else repository:tag, the tag defaulting
to the chart's appVersion.
*/}}
{{- define "rds-export-operator.image" -}}
{{- if .Values.image.digest }}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository (.Values.image.tag | default .Chart.AppVersion) }}
{{- end }}
{{- end }}

{{/*
The pods' affinity: the affinity value, plus (with more than one replica, unless it sets podAntiAffinity itself) a
preferred anti-affinity by hostname, so that one node going down does not take the leader and its standbys along.
Preferred, not required: a small cluster still schedules every replica. Rendered as YAML ({} when empty).
*/}}
{{- define "rds-export-operator.affinity" -}}
{{- $affinity := deepCopy .Values.affinity }}
{{- if and (gt (int .Values.replicas) 1) (not (hasKey $affinity "podAntiAffinity")) }}
{{- $term := dict "topologyKey" "kubernetes.io/hostname" "labelSelector" (dict "matchLabels" (include "rds-export-operator.selectorLabels" . | fromYaml)) }}
{{- $_ := set $affinity "podAntiAffinity" (dict "preferredDuringSchedulingIgnoredDuringExecution" (list (dict "weight" 100 "podAffinityTerm" $term))) }}
{{- end }}
{{- toYaml $affinity }}
{{- end }}

{{/*
"true" when the operator must hold the leader election Lease: more than one replica, or asked for explicitly.
Templates compare with eq "true" (include always returns a string).
*/}}
{{- define "rds-export-operator.leaderElection" -}}
{{- if or (gt (int .Values.replicas) 1) .Values.leaderElection.enabled }}true{{ else }}false{{ end }}
{{- end }}

{{/*
"true" when a PodDisruptionBudget is rendered: pdb.enabled true, or "auto" with more than one replica.
*/}}
{{- define "rds-export-operator.pdbEnabled" -}}
{{- $enabled := .Values.pdb.enabled }}
{{- if kindIs "bool" $enabled }}{{ $enabled }}{{ else if gt (int .Values.replicas) 1 }}true{{ else }}false{{ end }}
{{- end }}

{{/*
The operator's permissions on its own objects, the same for the ClusterRole (all namespaces) and for the Role in
each watched namespace. Least privilege: nothing else is needed (see the chart README, section RBAC).
*/}}
{{- define "rds-export-operator.rules" -}}
# kopf lists and watches RdsExportTask objects to reconcile them, and patches their metadata: the finalizer
# (added only while a Cancel deletion policy needs it) and kopf's progress and diff-base annotations.
# Schedules create their exports as RdsExportTask objects, list them (by label) and delete them (history limits,
# concurrencyPolicy Replace); ttlSecondsAfterFinished deletes finished ones.
- apiGroups: [rdsexport.dev]
  resources: [rdsexporttasks]
  verbs: [get, list, watch, patch, create, delete]
# The operator reports every export's state (AWS status, progress, conditions) through the status subresource.
- apiGroups: [rdsexport.dev]
  resources: [rdsexporttasks/status]
  verbs: [get, patch]
# kopf lists and watches RdsExportSchedule objects; the operator reports what each did through its status.
- apiGroups: [rdsexport.dev]
  resources: [rdsexportschedules]
  verbs: [get, list, watch, patch]
- apiGroups: [rdsexport.dev]
  resources: [rdsexportschedules/status]
  verbs: [get, patch]
# Exports carry an ownerReference to their schedule with blockOwnerDeletion; where the
# OwnerReferencesPermissionEnforcement admission plugin runs (e.g. OpenShift), that needs update on the owner's
# finalizers. The operator writes no finalizer on a schedule.
- apiGroups: [rdsexport.dev]
  resources: [rdsexportschedules/finalizers]
  verbs: [update]
# Every transition and every AWS error becomes an Event on the object, for `kubectl describe` (kopf posts core/v1
# Events). Create only: the operator never reads, updates or deletes Events.
- apiGroups: [""]
  resources: [events]
  verbs: [create]
{{- end }}

{{/*
The identity mapping ConfigMap (namespace -> IAM role), in the release namespace.
*/}}
{{- define "rds-export-operator.identitiesConfigMap" -}}
{{- printf "%s-identities" (include "rds-export-operator.fullname" .) }}
{{- end }}
