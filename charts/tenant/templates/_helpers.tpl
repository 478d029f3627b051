{{/* Labels per Helm conventions plus the operator's ownership labels (used for pruning). */}}
{{- define "tenant.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
app.kubernetes.io/name: tenant
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: mevaas
mevaas.io/tenant: {{ .Values.tenant.name }}
mevaas.io/tier: {{ .Values.tier }}
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{- define "tenant.id" -}}
{{- default .Values.tenant.name .Values.tenant.id -}}
{{- end -}}

{{- define "tenant.workerLabels" -}}
app.kubernetes.io/name: {{ .component }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/component: {{ .component }}
mevaas.io/tenant: {{ .root.Values.tenant.name }}
{{- end -}}

{{- define "tenant.image" -}}
{{- $img := .root.Values.workers.image -}}
{{- $ref := printf "%s/mevaas-%s:%s" $img.registry .component $img.tag -}}
{{- with index (default (dict) $img.digests) .component -}}
{{- printf "%s@%s" $ref . -}}
{{- else -}}
{{- $ref -}}
{{- end -}}
{{- end -}}

{{/* Egress rules from [{cidr, except, ports: [{port, protocol}]}]. */}}
{{- define "tenant.egressRules" -}}
{{- range . }}
- to:
    - ipBlock:
        cidr: {{ .cidr }}
        {{- with .except }}
        except:
          {{- toYaml . | nindent 10 }}
        {{- end }}
  ports:
    {{- range .ports }}
    - port: {{ .port }}
      protocol: {{ default "TCP" .protocol }}
    {{- end }}
{{- end }}
{{- end -}}
