{{/* The image reference, tag defaulting to the chart's appVersion. */}}
{{- define "nodepath.image" -}}
{{ .Values.image.repository }}:{{ default .Chart.AppVersion .Values.image.tag }}
{{- end -}}

{{- define "nodepath.labels" -}}
app.kubernetes.io/part-of: nodepath
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ .Chart.Name }}-{{ .Chart.Version }}
{{- end -}}

{{/* "true"/"false" from a --set bool or a string. */}}
{{- define "nodepath.bool" -}}
{{- if kindIs "bool" . -}}{{ . }}{{- else -}}{{ eq (toString .) "true" }}{{- end -}}
{{- end -}}

{{/* A value that may be a string or a list, as a list. */}}
{{- define "nodepath.list" -}}
{{- if kindIs "string" . -}}{{ splitList " " . | compact | toJson }}{{- else -}}{{ . | default list | toJson }}{{- end -}}
{{- end -}}

{{/* The API server the agent and operator use: k8sServiceHost/Port, else in-cluster. */}}
{{- define "nodepath.apiServer" -}}
{{- if .Values.k8sServiceHost -}}https://{{ .Values.k8sServiceHost }}:{{ .Values.k8sServicePort }}{{- end -}}
{{- end -}}

{{/*
Combinations the schema cannot express, refused with the reason (Cilium refuses the same ones at
agent start; a chart that renders them would install an agent that cannot run).
*/}}
{{- define "nodepath.validate" -}}
{{- $v := .Values -}}
{{- $native := $v.ipv4NativeRoutingCIDR -}}
{{- if and (eq (include "nodepath.bool" $v.bpf.masquerade) "true") (not $native) -}}
{{- fail "bpf.masquerade=true needs ipv4NativeRoutingCIDR (the range that is never masqueraded), as Cilium's native routing does" -}}
{{- end -}}
{{- if and (eq (include "nodepath.bool" $v.autoDirectNodeRoutes) "true") (not $native) -}}
{{- fail "autoDirectNodeRoutes=true needs ipv4NativeRoutingCIDR (routingMode=native)" -}}
{{- end -}}
{{- if and (eq (include "nodepath.bool" $v.installNoConntrackIptablesRules) "true") (not $native) -}}
{{- fail "installNoConntrackIptablesRules=true needs ipv4NativeRoutingCIDR (routingMode=native with kubeProxyReplacement)" -}}
{{- end -}}
{{- $pools := include "nodepath.list" $v.ipam.operator.clusterPoolIPv4PodCIDRList | fromJsonArray -}}
{{- if ne (len $pools) 1 -}}
{{- fail (printf "ipam.operator.clusterPoolIPv4PodCIDRList: nodepath takes exactly one IPv4 pool CIDR, got %d" (len $pools)) -}}
{{- end -}}
{{- if and (eq (include "nodepath.bool" $v.hubble.relay.enabled) "true") (ne (include "nodepath.bool" $v.hubble.enabled) "true") -}}
{{- fail "hubble.relay.enabled=true needs hubble.enabled=true: the relay reads each agent's Hubble server" -}}
{{- end -}}
{{- if and (eq (include "nodepath.bool" $v.l2announcements.enabled) "true") (eq (int $v.operator.replicas) 0) -}}
{{- fail "l2announcements.enabled=true needs the operator (operator.replicas >= 1): it gives LoadBalancer services their addresses" -}}
{{- end -}}
{{- end -}}
