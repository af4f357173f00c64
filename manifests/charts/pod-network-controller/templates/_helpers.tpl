{{/* The one name of every object: one agent per node, so one install per cluster. */}}
{{- define "pnc.name" -}}pod-network-controller{{- end -}}

{{/* "true" on OpenShift: kubernetesDistribution, or Istio's platform / global.platform. */}}
{{- define "pnc.openshift" -}}
{{- $global := .Values.global | default dict -}}
{{- if or (eq .Values.kubernetesDistribution "OpenShift") (eq (lower .Values.platform) "openshift") (eq (lower (get $global "platform" | default "")) "openshift") -}}
true
{{- end -}}
{{- end -}}

{{/* The agent's user, as the admission policies see it. */}}
{{- define "pnc.agentUser" -}}
system:serviceaccount:{{ .Release.Namespace }}:{{ include "pnc.name" . }}
{{- end -}}

{{/* Labels of every object; the last three say which Helm release owns it. */}}
{{- define "pnc.labels" -}}
app.kubernetes.io/name: {{ include "pnc.name" . }}
app.kubernetes.io/part-of: {{ include "pnc.name" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}

{{/* repository@digest, else repository:tag (the tag defaults to the chart's appVersion). */}}
{{- define "pnc.image" -}}
{{- if .image.digest -}}
{{ .image.repository }}@{{ .image.digest }}
{{- else -}}
{{ .image.repository }}:{{ .image.tag | default .chart.AppVersion }}
{{- end -}}
{{- end -}}

{{/*
The MutatingAdmissionPolicy's API version: injection.apiVersion, else what the cluster serves
(v1 from Kubernetes 1.36; v1beta1 on 1.34 and 1.35 with the MutatingAdmissionPolicy gate). A
cluster's discovery lists kinds (v1/Pod); Helm's built-in set without a cluster lists only groups,
so `helm template` decides by --kube-version.
*/}}
{{- define "pnc.injectionApiVersion" -}}
{{- $group := "admissionregistration.k8s.io" -}}
{{- $apis := .Capabilities.APIVersions -}}
{{- $kube := .Capabilities.KubeVersion.Version -}}
{{- $version := .Values.injection.apiVersion -}}
{{- if not $version -}}
{{- if $apis.Has "v1/Pod" -}}
{{- if $apis.Has (printf "%s/v1/MutatingAdmissionPolicy" $group) -}}
{{- $version = "v1" -}}
{{- else if $apis.Has (printf "%s/v1beta1/MutatingAdmissionPolicy" $group) -}}
{{- $version = "v1beta1" -}}
{{- end -}}
{{- else if semverCompare ">=1.36.0-0" $kube -}}
{{- $version = "v1" -}}
{{- else if semverCompare ">=1.34.0-0" $kube -}}
{{- $version = "v1beta1" -}}
{{- end -}}
{{- end -}}
{{- if not $version -}}
{{- fail (printf "injection.enabled: Kubernetes %s serves no MutatingAdmissionPolicy (v1 from 1.36; v1beta1 on 1.34 and 1.35 with --feature-gates=MutatingAdmissionPolicy=true --runtime-config=%s/v1beta1=true). Set injection.enabled=false and inject the waiter with Istio's injector, or set injection.apiVersion" $kube $group) -}}
{{- end -}}
{{ $group }}/{{ $version }}
{{- end -}}
