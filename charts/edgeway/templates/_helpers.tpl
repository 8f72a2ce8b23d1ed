{{/* Chart name. */}}
{{- define "edgeway.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Fully qualified app name (release-based, at most 63 characters). */}}
{{- define "edgeway.fullname" -}}
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

{{- define "edgeway.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Labels on every object. */}}
{{- define "edgeway.labels" -}}
helm.sh/chart: {{ include "edgeway.chart" . }}
app.kubernetes.io/name: {{ include "edgeway.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: edgeway
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{/* Selector labels; call with (dict "ctx" $ "component" "operator"). */}}
{{- define "edgeway.selectorLabels" -}}
app.kubernetes.io/name: {{ include "edgeway.name" .ctx }}
app.kubernetes.io/instance: {{ .ctx.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end }}

{{- define "edgeway.componentLabels" -}}
{{ include "edgeway.labels" .ctx }}
app.kubernetes.io/component: {{ .component }}
{{- end }}

{{- define "edgeway.operator.fullname" -}}
{{- printf "%s-operator" (include "edgeway.fullname" .) | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "edgeway.platform.fullname" -}}
{{- printf "%s-platform" (include "edgeway.fullname" .) | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "edgeway.serviceAccountName" -}}
{{- if .Values.operator.serviceAccount.create }}
{{- default (include "edgeway.operator.fullname" .) .Values.operator.serviceAccount.name }}
{{- else }}
{{- required "operator.serviceAccount.name is required when operator.serviceAccount.create is false" .Values.operator.serviceAccount.name }}
{{- end }}
{{- end }}

{{/* The one image (repository:tag or repository@digest). */}}
{{- define "edgeway.image" -}}
{{- if .Values.image.digest }}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}
{{- end }}

{{- define "edgeway.sidecarImage" -}}
{{- default (include "edgeway.image" .) .Values.operator.sidecarImage }}
{{- end }}

{{- define "edgeway.platform.tlsSecretName" -}}
{{- default (printf "%s-tls" (include "edgeway.platform.fullname" .)) .Values.platform.tls.secretName }}
{{- end }}

{{- define "edgeway.platform.secretName" -}}
{{- include "edgeway.platform.fullname" . }}
{{- end }}

{{/* The operator's namespaced permissions (ClusterRole, or a Role per watched namespace). */}}
{{- define "edgeway.operator.rules" -}}
# The gateways: watched by the controller; status written with server-side apply
# (patch on the status subresource).
- apiGroups: [edgeway.io]
  resources: [edgegateways]
  verbs: [get, list, watch]
- apiGroups: [edgeway.io]
  resources: [edgegateways/status]
  verbs: [patch]
# Children carry controller owner references with blockOwnerDeletion: needs update on
# finalizers where OwnerReferencesPermissionEnforcement is enabled.
- apiGroups: [edgeway.io]
  resources: [edgegateways/finalizers]
  verbs: [update]
# Secrets: owned ones watched, referenced ones read (get); certificates, credentials written
# with server-side apply (patch; create when absent); the shared CA Secret is created (POST)
# and rotated with a resourceVersion-guarded PUT (update). Never deleted (garbage collection).
- apiGroups: [""]
  resources: [secrets]
  verbs: [get, list, watch, create, update, patch]
# ConfigMaps: rendered config applied; referenced ones (Lua templates, CAs) read.
- apiGroups: [""]
  resources: [configmaps]
  verbs: [get, list, watch, create, patch]
# Services: applied only (server-side apply creates them).
- apiGroups: [""]
  resources: [services]
  verbs: [list, watch, create, patch]
- apiGroups: [apps]
  resources: [statefulsets]
  verbs: [get, list, watch, create, patch]
# PodDisruptionBudgets (policy/v1, or v1beta1 on 1.20): applied per gateway from two pods up
# (one turned off allows every disruption instead of being deleted).
- apiGroups: [policy]
  resources: [poddisruptionbudgets]
  verbs: [create, patch]
# Pods: listed to count ready simulation shards.
- apiGroups: [""]
  resources: [pods]
  verbs: [list]
# Events (kube-runtime's recorder: create, then patch the series).
- apiGroups: [events.k8s.io]
  resources: [events]
  verbs: [create, patch]
{{- end }}

{{/* Container security context. */}}
{{- define "edgeway.securityContext" -}}
{{ toYaml .Values.securityContext }}
{{- end }}
