{{/* Names and labels shared by every template. */}}

{{- define "kubedns.name" -}}
{{- .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "kubedns.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "kubedns.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
app.kubernetes.io/name: {{ include "kubedns.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end -}}

{{- define "kubedns.selectorLabels" -}}
app.kubernetes.io/name: {{ include "kubedns.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: dns
{{- end -}}

{{- define "kubedns.webhookSelectorLabels" -}}
app.kubernetes.io/name: {{ include "kubedns.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: webhook
{{- end -}}

{{- define "kubedns.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "kubedns.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{- define "kubedns.image" -}}
{{- printf "%s:%s" .Values.image.repository (.Values.image.tag | default .Chart.AppVersion) -}}
{{- end -}}

{{- define "kubedns.webhookName" -}}
{{- printf "%s-webhook" (include "kubedns.fullname" .) | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "kubedns.webhookSecretName" -}}
{{- .Values.webhook.tls.secretName | default (printf "%s-tls" (include "kubedns.webhookName" .)) -}}
{{- end -}}

{{/*
The kubedns config file: .Values.config with the settings the chart owns. listen and
ops.listen must match the container ports and probes, so they are not taken from values.
*/}}
{{- define "kubedns.config" -}}
{{- $config := deepCopy .Values.config -}}
{{- $ops := get $config "ops" | default dict -}}
{{- $_ := set $ops "listen" "0.0.0.0:9153" -}}
{{- $_ := set $config "ops" $ops -}}
{{- $_ := set $config "listen" "0.0.0.0:5353" -}}
{{- if not (get $config "dns_service") -}}
{{- $_ := set $config "dns_service" (printf "%s/%s" .Release.Namespace .Values.service.name) -}}
{{- end -}}
{{- toYaml $config -}}
{{- end -}}

{{/*
The part of the config file kubedns applies only at start (RESTART_KEYS in kubedns/reload.py,
and pods to or from verified): a change of it must roll the pods, the rest reloads in place.
*/}}
{{- define "kubedns.restartConfig" -}}
{{- $config := include "kubedns.config" . | fromYaml -}}
{{- $restart := pick $config "listen" "snapshot" "kubeconfig" "cluster_domain" "dns_service" "udp" "watch" -}}
{{- $_ := set $restart "ops.listen" (get (get $config "ops" | default dict) "listen") -}}
{{- $_ := set $restart "pods is verified" (eq (get $config "pods" | toString) "verified") -}}
{{- toYaml $restart -}}
{{- end -}}

{{/* Seconds of lame duck, rounded up: the base of terminationGracePeriodSeconds. */}}
{{- define "kubedns.lameDuck" -}}
{{- $ops := .Values.config.ops | default dict -}}
{{- int (ceil (get $ops "lame_duck" | default 0)) -}}
{{- end -}}

{{/* The nameserver IP the webhook writes into pods. */}}
{{- define "kubedns.clusterDNS" -}}
{{- $ip := .Values.webhook.clusterDNS | default .Values.service.clusterIP -}}
{{- if not $ip -}}
{{- $existing := lookup "v1" "Service" .Release.Namespace .Values.service.name -}}
{{- if $existing -}}
{{- $ip = $existing.spec.clusterIP -}}
{{- end -}}
{{- end -}}
{{- if not $ip -}}
{{- fail "webhook.enabled needs the DNS Service's IP: set service.clusterIP (or webhook.clusterDNS)" -}}
{{- end -}}
{{- $ip -}}
{{- end -}}
