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

{{/* "true" when the controller is given a CloudEvents sink: controller.cloudEvents.sink or sinkSecret,
or ZEN_FLOW_CLOUDEVENTS_SINK in extraEnv or --cloudevents-sink in extraArgs. The sink's timeout and CA go
with it only then: the controller refuses a CA file without an https sink, so a caConfigMap left set
after the sink was cleared (to turn it off) must not stop the pod from starting. */}}
{{- define "zen-flow.cloudEventsSinkSet" -}}
{{- $ce := .Values.controller.cloudEvents -}}
{{- $set := or $ce.sink ($ce.sinkSecret).name -}}
{{- range .Values.controller.extraEnv }}{{ if eq (toString .name) "ZEN_FLOW_CLOUDEVENTS_SINK" }}{{ $set = true }}{{ end }}{{ end -}}
{{- range .Values.controller.extraArgs }}{{ if hasPrefix "--cloudevents-sink" (toString .) }}{{ $set = true }}{{ end }}{{ end -}}
{{- if $set }}true{{ end -}}
{{- end }}

{{/* repository:tag, repository@digest, or repository:tag@digest when both are set (the digest decides
what is pulled; the tag stays for the reader). The default tag, appVersion, is left out with a digest:
a mirror that keeps digests only may have no such tag. */}}
{{- define "zen-flow.image" -}}
{{- $image := .Values.image }}
{{- if $image.digest }}
{{- if $image.tag }}
{{- printf "%s:%s@%s" $image.repository $image.tag $image.digest }}
{{- else }}
{{- printf "%s@%s" $image.repository $image.digest }}
{{- end }}
{{- else }}
{{- printf "%s:%s" $image.repository (default .Chart.AppVersion $image.tag) }}
{{- end }}
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

{{/* archive.logs as --archive-logs takes it: off, on, opt-in or opt-out (a YAML boolean, `logs: on`
unquoted or an old `true`/`false`, reads as on/off); "off" without an archive. */}}
{{- define "zen-flow.archiveLogs" -}}
{{- $a := .Values.archive | default dict }}
{{- $mode := toString (index $a "logs" | default "off") }}
{{- if eq $mode "true" }}{{ $mode = "on" }}{{ end }}
{{- if eq $mode "false" }}{{ $mode = "off" }}{{ end }}
{{- if not (has $mode (list "off" "on" "opt-in" "opt-out")) }}
{{- fail (printf "archive.logs must be off, on, opt-in or opt-out, not %q" $mode) }}
{{- end }}
{{- if and $a.endpoint $a.bucket }}{{ $mode }}{{ else }}off{{ end }}
{{- end }}

{{/* "true" when the controller may read pods' logs: archive.logs not off, or --archive-logs (but =off)
in controller.extraArgs, or ZEN_FLOW_ARCHIVE_LOGS (but off) in controller.extraEnv, as
zen-flow.cloudEventsSinkSet reads them: the pods/log rule goes with it. */}}
{{- define "zen-flow.readsLogs" -}}
{{- $set := ne (include "zen-flow.archiveLogs" .) "off" -}}
{{- range .Values.controller.extraEnv }}{{ if and (eq (toString .name) "ZEN_FLOW_ARCHIVE_LOGS") (ne (toString .value) "off") }}{{ $set = true }}{{ end }}{{ end -}}
{{- range .Values.controller.extraArgs }}{{ if and (hasPrefix "--archive-logs" (toString .)) (ne (toString .) "--archive-logs=off") }}{{ $set = true }}{{ end }}{{ end -}}
{{- if $set }}true{{ end -}}
{{- end }}
