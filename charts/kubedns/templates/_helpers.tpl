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

{{/*
The image reference: repository@digest when image.digest is set (the tag is then left out:
a digest pins the content, and a tag beside it would only be misleading), else repository:tag.
*/}}
{{- define "kubedns.image" -}}
{{- if .Values.image.digest -}}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest -}}
{{- else -}}
{{- printf "%s:%s" .Values.image.repository (.Values.image.tag | default .Chart.AppVersion) -}}
{{- end -}}
{{- end -}}

{{/*
The label every cluster DNS consumer selects on: NodeLocal DNSCache's kube-dns-upstream
Service, "allow DNS" NetworkPolicies, kube-prometheus-stack's coreDns Service and
`kubectl -l k8s-app=kube-dns`. The DNS pods and the Service's selector carry it; the
Deployment's own selector does not (it is immutable, and kubeadm's coredns Deployment selects
the same label).
*/}}
{{- define "kubedns.k8sApp" -}}
{{- .Values.k8sAppLabel | default "kube-dns" -}}
{{- end -}}

{{/*
The port the DNS container listens on: 53 as CoreDNS does, or 5353 with
dnsPort.unprivileged (for clusters that refuse the sysctl below; see the chart README for
what that breaks).
*/}}
{{- define "kubedns.dnsPort" -}}
{{- if .Values.dnsPort.unprivileged -}}5353{{- else -}}53{{- end -}}
{{- end -}}

{{/*
The DNS pods' securityContext: podSecurityContext from values, plus the sysctl that lets the
non-root interpreter bind 53. A capability added to a non-root container is not in its
effective set after exec unless the binary carries file capabilities (CoreDNS's image runs
`setcap cap_net_bind_service=+ep /coredns`); file capabilities on the Python interpreter
would make every container of the image that drops NET_BIND_SERVICE (the webhook, the
unprivileged mode) fail to exec it with EPERM. net.ipv4.ip_unprivileged_port_start is a
safe, network-namespaced sysctl since Kubernetes 1.22, allowed by the kubelet and by the
Pod Security "baseline" and "restricted" levels, and changes nothing outside the pod.
*/}}
{{- define "kubedns.podSecurityContext" -}}
{{- $ctx := deepCopy (.Values.podSecurityContext | default dict) -}}
{{- if not .Values.dnsPort.unprivileged -}}
{{- $sysctls := list -}}
{{- range ($ctx.sysctls | default list) -}}
{{- if ne .name "net.ipv4.ip_unprivileged_port_start" -}}
{{- $sysctls = append $sysctls . -}}
{{- end -}}
{{- end -}}
{{- $sysctls = append $sysctls (dict "name" "net.ipv4.ip_unprivileged_port_start" "value" (include "kubedns.dnsPort" .)) -}}
{{- $_ := set $ctx "sysctls" $sysctls -}}
{{- end -}}
{{- toYaml $ctx -}}
{{- end -}}

{{/*
The DNS container's securityContext: securityContext from values, with NET_BIND_SERVICE
added when listening on 53. kubedns does not need it to bind (the sysctl above does that);
it is the one capability CoreDNS's pod carries, the one Pod Security "restricted" lets a pod
add, and what an image whose interpreter has file capabilities would need.
*/}}
{{- define "kubedns.securityContext" -}}
{{- $ctx := deepCopy (.Values.securityContext | default dict) -}}
{{- if not .Values.dnsPort.unprivileged -}}
{{- $caps := $ctx.capabilities | default dict -}}
{{- $add := $caps.add | default list -}}
{{- if not (has "NET_BIND_SERVICE" $add) -}}
{{- $_ := set $caps "add" (append $add "NET_BIND_SERVICE") -}}
{{- end -}}
{{- $_ := set $ctx "capabilities" $caps -}}
{{- end -}}
{{- toYaml $ctx -}}
{{- end -}}

{{- define "kubedns.autoscalerName" -}}
{{- printf "%s-autoscaler" (include "kubedns.fullname" .) | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* The cluster-proportional-autoscaler's parameters, as its ConfigMap and flag take them. */}}
{{- define "kubedns.autoscalerParams" -}}
{{- $l := .Values.autoscaler.linear -}}
{{- $linear := dict "coresPerReplica" $l.coresPerReplica "nodesPerReplica" $l.nodesPerReplica "min" $l.min "max" $l.max "preventSinglePointFailure" $l.preventSinglePointFailure "includeUnschedulableNodes" $l.includeUnschedulableNodes -}}
{{- toJson (dict "linear" $linear) -}}
{{- end -}}

{{- define "kubedns.webhookName" -}}
{{- printf "%s-webhook" (include "kubedns.fullname" .) | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "kubedns.webhookSecretName" -}}
{{- .Values.webhook.tls.secretName | default (printf "%s-tls" (include "kubedns.webhookName" .)) -}}
{{- end -}}

{{/*
The kubedns config file: .Values.config with the settings the chart owns. listen (0.0.0.0:53,
or :5353 with dnsPort.unprivileged) and ops.listen must match the container ports and
probes, so they are not taken from values.
*/}}
{{- define "kubedns.config" -}}
{{- $config := deepCopy .Values.config -}}
{{- $ops := get $config "ops" | default dict -}}
{{- $_ := set $ops "listen" "0.0.0.0:9153" -}}
{{- $_ := set $config "ops" $ops -}}
{{- $_ := set $config "listen" (printf "0.0.0.0:%s" (include "kubedns.dnsPort" .)) -}}
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
