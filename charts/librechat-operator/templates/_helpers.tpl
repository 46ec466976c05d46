{{/*
Chart name, or nameOverride.
*/}}
{{- define "librechat-operator.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Full name of every resource: fullnameOverride, else "<release>-<chart name>", else the release
name alone when it already contains the chart name. Kept to 63 characters (DNS label).
*/}}
{{- define "librechat-operator.fullname" -}}
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
Chart label value.
*/}}
{{- define "librechat-operator.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Labels on every resource.
*/}}
{{- define "librechat-operator.labels" -}}
helm.sh/chart: {{ include "librechat-operator.chart" . }}
{{ include "librechat-operator.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/component: operator
{{- end }}

{{/*
Labels that select the operator's pods (immutable once a Deployment exists).
*/}}
{{- define "librechat-operator.selectorLabels" -}}
app.kubernetes.io/name: {{ include "librechat-operator.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{/*
The ServiceAccount the operator runs as.
*/}}
{{- define "librechat-operator.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "librechat-operator.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- required "serviceAccount.name is required when serviceAccount.create is false" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/*
The leader-election Lease.
*/}}
{{- define "librechat-operator.leaseName" -}}
{{- default (include "librechat-operator.fullname" .) .Values.leaderElection.leaseName }}
{{- end }}

{{/*
The image reference: repository@digest, else repository:tag (tag defaults to appVersion).
*/}}
{{- define "librechat-operator.image" -}}
{{- if .Values.image.digest }}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}
{{- end }}

{{/*
The rules the operator needs in every namespace it watches, shared by the ClusterRole
(all namespaces) and the per-namespace Roles (watchNamespaces), so both modes grant exactly
the same. Each verb is there because the code calls it (src/controller/):
  - librechatinstances: list/watch (one watch per scope, whose store is what users, bans,
    invites, groups and roles read of their instance: no get), patch (the instance's
    finalizer: it waits for its dependents before it goes).
  - librechatusers: get (bans resolve userRef; a claim's owner is checked), list/watch, patch
    (the finalizer is added and removed with a JSON patch of metadata.finalizers).
  - userbans, userinvites: list/watch, patch (finalizer); nothing reads them by name.
  - <plural>/status: patch (status is written with a merge patch).
  - librechatusers/finalizers, userinvites/finalizers: update. The operator creates Secrets
    owned by these objects with blockOwnerDeletion: true, which the
    OwnerReferencesPermissionEnforcement admission plugin allows only to whoever may update
    the owner's finalizers.
  - secrets: get (passwords, store URIs, owned Secrets), list/watch (metadata-only watches),
    create (generated-password and invite-link Secrets), patch (an invite link's url is
    refreshed when the instance's domainClient changes). Never update or delete.
  - events.k8s.io events: create, patch (a repeated event is patched as a series).
*/}}
{{- define "librechat-operator.rules" -}}
- apiGroups: ["librechat.ai"]
  resources: ["librechatinstances"]
  verbs: ["list", "watch", "patch"]
- apiGroups: ["librechat.ai"]
  resources: ["librechatusers"]
  verbs: ["get", "list", "watch", "patch"]
- apiGroups: ["librechat.ai"]
  resources: ["userbans", "userinvites", "librechatgroups", "librechatroles"]
  verbs: ["list", "watch", "patch"]
- apiGroups: ["librechat.ai"]
  resources: ["librechatinstances/status", "librechatusers/status", "userbans/status", "userinvites/status", "librechatgroups/status", "librechatroles/status"]
  verbs: ["patch"]
- apiGroups: ["librechat.ai"]
  resources: ["librechatusers/finalizers", "userinvites/finalizers"]
  verbs: ["update"]
- apiGroups: [""]
  resources: ["secrets"]
  verbs: ["get", "list", "watch", "create", "patch"]
- apiGroups: ["events.k8s.io"]
  resources: ["events"]
  verbs: ["create", "patch"]
{{- end }}

{{/*
Checks of combinations the schema cannot express readably.
*/}}
{{- define "librechat-operator.validate" -}}
{{- if and (gt (int .Values.replicas) 1) (not .Values.leaderElection.enabled) }}
{{- fail (printf "replicas is %d but leaderElection.enabled is false: several replicas would all reconcile the same objects. Set leaderElection.enabled=true or replicas=1" (int .Values.replicas)) }}
{{- end }}
{{- with .Values.podDisruptionBudget }}
{{- $min := toString .minAvailable }}
{{- $max := toString .maxUnavailable }}
{{- if and (ne $min "") (ne $max "") }}
{{- fail (printf "podDisruptionBudget.minAvailable (%s) and podDisruptionBudget.maxUnavailable (%s) are both set: a PodDisruptionBudget takes one. Set the other to \"\"" $min $max) }}
{{- end }}
{{- if and (eq $min "") (eq $max "") (include "librechat-operator.pdbEnabled" $) }}
{{- fail "podDisruptionBudget: set podDisruptionBudget.minAvailable or podDisruptionBudget.maxUnavailable" }}
{{- end }}
{{- end }}
{{- if regexMatch "^(0+(ms|s|m|h|d))+$" .Values.resyncPeriod }}
{{- fail (printf "resyncPeriod is %s: it must be more than zero, e.g. 5m" .Values.resyncPeriod) }}
{{- end }}
{{- if and .Values.prometheusRule.enabled (not .Values.serviceMonitor.enabled) (eq .Values.prometheusRule.selector "") }}
{{- fail "prometheusRule.enabled without serviceMonitor.enabled: the alerts would select the series of a scrape job nothing runs, and LibreChatOperatorDown would fire forever. Set serviceMonitor.enabled=true, or prometheusRule.selector to the labels your Prometheus gives the operator's series (e.g. job=\"lco\")" }}
{{- end }}
{{- if and .Values.leaderElection.enabled (regexMatch "^(0+(ms|s|m|h|d))+$" .Values.leaderElection.leaseDuration) }}
{{- fail (printf "leaderElection.leaseDuration is %s: it must be more than zero, e.g. 15s" .Values.leaderElection.leaseDuration) }}
{{- end }}
{{- end }}

{{/*
Labels on the CRDs: the chart's, without the operator component (the CRDs outlive a release).
*/}}
{{- define "librechat-operator.crdLabels" -}}
helm.sh/chart: {{ include "librechat-operator.chart" . }}
app.kubernetes.io/name: {{ include "librechat-operator.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/component: crds
{{- end }}

{{/*
The fields of a probe besides its handler, from a probes.<name> value (enabled is the
chart's own switch).
*/}}
{{- define "librechat-operator.probeFields" -}}
{{- toYaml (omit . "enabled") }}
{{- end }}

{{/*
The pods' topology spread constraints: topologySpreadConstraints, each without a labelSelector
given the pods' selector labels; else, with replicas > 1 and defaultTopologySpread, a soft
spread over nodes. Empty when there are none.
*/}}
{{- define "librechat-operator.topologySpreadConstraints" -}}
{{- $selector := include "librechat-operator.selectorLabels" . | fromYaml }}
{{- $constraints := list }}
{{- range .Values.topologySpreadConstraints }}
{{- $c := deepCopy . }}
{{- if not $c.labelSelector }}
{{- $_ := set $c "labelSelector" (dict "matchLabels" $selector) }}
{{- end }}
{{- $constraints = append $constraints $c }}
{{- end }}
{{- if and (not $constraints) .Values.defaultTopologySpread (gt (int .Values.replicas) 1) }}
{{- $constraints = list (dict "maxSkew" 1 "topologyKey" "kubernetes.io/hostname" "whenUnsatisfiable" "ScheduleAnyway" "labelSelector" (dict "matchLabels" $selector)) }}
{{- end }}
{{- with $constraints }}
{{- toYaml . }}
{{- end }}
{{- end }}

{{/*
Whether the chart renders a PodDisruptionBudget ("true" or ""): podDisruptionBudget.enabled,
or when it is null, replicas > 1.
*/}}
{{- define "librechat-operator.pdbEnabled" -}}
{{- $on := .Values.podDisruptionBudget.enabled }}
{{- if kindIs "invalid" $on }}
{{- $on = gt (int .Values.replicas) 1 }}
{{- end }}
{{- if $on }}true{{ end }}
{{- end }}

{{/*
The operator's series in PromQL: prometheusRule.selector, else what the chart's ServiceMonitor
scrapes (Prometheus Operator names the job after the Service).
*/}}
{{- define "librechat-operator.metricSelector" -}}
{{- default (printf "job=%q,namespace=%q" (printf "%s-metrics" (include "librechat-operator.fullname" .)) .Release.Namespace) .Values.prometheusRule.selector }}
{{- end }}
