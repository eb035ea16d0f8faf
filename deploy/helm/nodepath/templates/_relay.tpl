{{/* hubble-relay is rendered when both hubble and hubble.relay are on. */}}
{{- define "nodepath.relayEnabled" -}}
{{- and (eq (include "nodepath.bool" .Values.hubble.enabled) "true") (eq (include "nodepath.bool" .Values.hubble.relay.enabled) "true") -}}
{{- end -}}

{{- define "nodepath.relayImage" -}}
{{ .Values.hubble.relay.image.repository }}:{{ .Values.hubble.relay.image.tag }}
{{- end -}}
