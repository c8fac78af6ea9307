{{/* Helpers of the webhook's templates (webhook-*.yaml). */}}

{{- define "kubedns.webhookLabels" -}}
{{ include "kubedns.labels" . }}
app.kubernetes.io/component: webhook
{{- end -}}

{{/*
Where the serving certificate comes from: "helm" (the chart's own CA, the default),
"certManager" or "caBundle" (a Secret the user made). Exactly one; contradictory values fail
here, with a message naming the keys, rather than installing a webhook the API server cannot
call.
*/}}
{{- define "kubedns.webhookCertMode" -}}
{{- $w := .Values.webhook -}}
{{- if and $w.certManager.enabled $w.caBundle -}}
{{- fail "webhook.certManager.enabled and webhook.caBundle both set: cert-manager injects the CA itself; set one, or neither for the chart's own CA" -}}
{{- end -}}
{{- if and $w.certManager.issuerRef (not $w.certManager.issuerRef.name) -}}
{{- fail "webhook.certManager.issuerRef needs a name (or leave issuerRef empty for the chart's own cert-manager CA)" -}}
{{- end -}}
{{- if $w.certManager.enabled -}}
certManager
{{- else if $w.caBundle -}}
caBundle
{{- else -}}
helm
{{- end -}}
{{- end -}}

{{/*
The names the serving certificate is valid for, as a JSON list. The API server calls a webhook
Service as <service>.<namespace>.svc (and checks that name); the fully qualified name is there
for in-cluster clients that use it.
*/}}
{{- define "kubedns.webhookDNSNames" -}}
{{- $name := include "kubedns.webhookName" . -}}
{{- $svc := printf "%s.%s.svc" $name .Release.Namespace -}}
{{- list $svc (printf "%s.%s" $svc (.Values.config.cluster_domain | default "cluster.local" | trimSuffix ".")) | toJson -}}
{{- end -}}

{{/*
The nameserver the webhook writes into pods: webhook.clusterDNS, else service.clusterIP, else
the DNS Service's IP as the kubelet gives it to the webhook's own container: the Service is in
the release namespace, so the container has <SERVICE>_SERVICE_HOST, and the kubelet expands
$(VAR) in args (recomputed at every container start, so a container started before the Service
existed gets it on its restart). That makes `--set webhook.enabled=true` alone enough even on
a fresh install, where the Service's IP is not known until the API server allocates it.
*/}}
{{- define "kubedns.clusterDNS" -}}
{{- $ip := .Values.webhook.clusterDNS | default .Values.service.clusterIP -}}
{{- if $ip -}}
{{- $ip -}}
{{- else -}}
{{- printf "$(%s_SERVICE_HOST)" (.Values.service.name | upper | replace "-" "_") -}}
{{- end -}}
{{- end -}}
