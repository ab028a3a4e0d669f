{{/* Names. With the release named "zen-flow" every object has the name config/ uses. */}}
{{- define "zen-flow.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "zen-flow.fullname" -}}
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

{{- define "zen-flow.controllerName" -}}
{{- printf "%s-controller" (include "zen-flow.fullname" .) | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "zen-flow.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "zen-flow.controllerName" .) .Values.serviceAccount.name }}
{{- else }}
{{- required "serviceAccount.name is required when serviceAccount.create=false" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/* The metrics Service's name is also the Prometheus job label the alerts select. */}}
{{- define "zen-flow.metricsServiceName" -}}
{{- printf "%s-controller-metrics" (include "zen-flow.fullname" .) | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "zen-flow.webhookServiceName" -}}
{{- printf "%s-webhook" (include "zen-flow.fullname" .) | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "zen-flow.webhookCertName" -}}
{{- printf "%s-webhook-cert" (include "zen-flow.fullname" .) | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "zen-flow.webhookSecretName" -}}
{{- if .Values.webhook.certManager.enabled }}
{{- include "zen-flow.webhookCertName" . }}
{{- else }}
{{- required "webhook.secretName (a kubernetes.io/tls Secret) is required when webhook.certManager.enabled=false" .Values.webhook.secretName }}
{{- end }}
{{- end }}

{{- define "zen-flow.leaseName" -}}
{{- default (include "zen-flow.controllerName" .) .Values.leaderElection.leaseName }}
{{- end }}

{{- define "zen-flow.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}

{{/* Labels */}}
{{- define "zen-flow.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
app.kubernetes.io/name: {{ include "zen-flow.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{/* The controller pods; the webhook Service, the metrics Service and the PDB select them by these. */}}
{{- define "zen-flow.selectorLabels" -}}
app.kubernetes.io/name: {{ include "zen-flow.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: controller
{{- end }}
