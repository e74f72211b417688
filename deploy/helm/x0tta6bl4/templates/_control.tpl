{{- define "x0tta6bl4.controlEnv" -}}
{{- $fn := include "x0tta6bl4.fullname" . }}
- name: X0TTA6BL4_CONTROL_DSN
  valueFrom:
    secretKeyRef:
      {{- if .Values.postgresql.enabled }}
      name: {{ $fn }}-postgresql
      key: dsn
      {{- else if .Values.postgresql.externalDSNSecret.name }}
      name: {{ .Values.postgresql.externalDSNSecret.name }}
      key: {{ .Values.postgresql.externalDSNSecret.key }}
      {{- else }}
      {{- fail "postgresql.enabled is false: set postgresql.externalDSNSecret" }}
      {{- end }}
{{- end -}}
{{- define "x0tta6bl4.controlSecurity" -}}
allowPrivilegeEscalation: false
readOnlyRootFilesystem: true
capabilities: {drop: [ALL]}
{{- end -}}
{{- define "x0tta6bl4.controlMounts" -}}
- {name: config, mountPath: /etc/x0tta6bl4, readOnly: true}
- {name: data, mountPath: /var/lib/x0tta6bl4-control}
{{- end -}}
