{{- define "lotsed.name" -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "lotsed.labels" -}}
app.kubernetes.io/name: lotsed
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}

{{- define "lotsed.selector" -}}
app.kubernetes.io/name: lotsed
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "lotsed.sqlite" -}}
{{- if eq .Values.database.mode "sqlite" -}}true{{- else if eq .Values.database.mode "postgres" -}}{{- else -}}
{{- fail (printf "database.mode must be sqlite or postgres, not %q" .Values.database.mode) -}}
{{- end -}}
{{- end -}}

{{- define "lotsed.replicas" -}}
{{- if include "lotsed.sqlite" . -}}1{{- else -}}{{ int .Values.replicas }}{{- end -}}
{{- end -}}

{{- define "lotsed.image" -}}
{{- $d := required "image.digest is required: lotse runs images pinned by digest" .Values.image.digest -}}
{{- if not (hasPrefix "sha256:" $d) -}}{{- fail "image.digest must be sha256:<hex>" -}}{{- end -}}
{{- printf "%s@%s" .Values.image.repository $d -}}
{{- end -}}
