{{- define "mevaas.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 50 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 50 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "mevaas.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
app.kubernetes.io/part-of: mevaas
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{/* Selector labels of one component; call with (dict "root" $ "component" "tenancy"). */}}
{{- define "mevaas.selectorLabels" -}}
app.kubernetes.io/name: {{ .component }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
{{- end -}}

{{- define "mevaas.componentLabels" -}}
{{ include "mevaas.labels" .root }}
{{ include "mevaas.selectorLabels" . }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{- define "mevaas.name" -}}
{{- printf "%s-%s" (include "mevaas.fullname" .root) .component | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "mevaas.image" -}}
{{- $override := index .root.Values.image.overrides .component -}}
{{- if $override -}}
{{- $override -}}
{{- else -}}
{{- printf "%s/mevaas-%s:%s" .root.Values.image.registry .component (default .root.Chart.AppVersion .root.Values.image.tag) -}}
{{- end -}}
{{- end -}}

{{/* A service's settings: serviceDefaults overlaid with services.<name>. */}}
{{- define "mevaas.serviceConfig" -}}
{{- toYaml (mergeOverwrite (deepCopy .root.Values.serviceDefaults) (deepCopy (index .root.Values.services .component))) -}}
{{- end -}}

{{- define "mevaas.chainsConfigMap" -}}
{{- printf "%s-chains" (include "mevaas.fullname" .) -}}
{{- end -}}

{{/* Egress to PostgreSQL: a managed database's CIDR or the in-cluster cluster's pods. */}}
{{- define "mevaas.postgresPeer" -}}
{{- if .Values.database.cidr }}
- ipBlock:
    cidr: {{ .Values.database.cidr }}
{{- else }}
- namespaceSelector:
    matchLabels:
      kubernetes.io/metadata.name: {{ .Values.database.namespace }}
  podSelector:
    matchLabels:
      {{- toYaml .Values.database.podLabels | nindent 6 }}
{{- end }}
{{- end -}}

{{- define "mevaas.egressRules" -}}
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

{{/* The environment every service container gets. */}}
{{- define "mevaas.commonEnv" -}}
- {name: SERVICE_NAME, value: {{ .component }}}
- {name: GRPC_PORT, value: {{ .root.Values.grpcPort | quote }}}
- {name: METRICS_PORT, value: {{ .root.Values.metricsPort | quote }}}
- {name: NATS_URL, value: {{ .root.Values.nats.url | quote }}}
- name: DATABASE_URL
  valueFrom:
    secretKeyRef: {name: {{ .root.Values.database.existingSecret }}, key: {{ .root.Values.database.secretKey }}}
- {name: JWT_PUBLIC_KEY_FILE, value: /etc/mevaas/jwt/public.pem}
- {name: CHAIN_REGISTRY_FILE, value: /etc/mevaas/chains/chains.yaml}
- {name: LOG_LEVEL, value: {{ .root.Values.logLevel | quote }}}
- {name: LOG_FORMAT, value: json}
- name: POD_NAME
  valueFrom: {fieldRef: {fieldPath: metadata.name}}
{{- with .root.Values.otlpEndpoint }}
- {name: OTEL_EXPORTER_OTLP_ENDPOINT, value: {{ . | quote }}}
- {name: OTEL_SERVICE_NAME, value: {{ printf "mevaas-%s" $.component }}}
{{- end }}
{{- end -}}

{{- define "mevaas.migrationContainer" -}}
- name: migrate-{{ .component }}
  image: {{ include "mevaas.image" . }}
  imagePullPolicy: {{ .root.Values.image.pullPolicy }}
  command:
    {{- toYaml .root.Values.migrations.command | nindent 4 }}
  args: [--service, {{ .component }}]
  env:
    - {name: SERVICE_NAME, value: {{ .component }}}
    - name: DATABASE_URL
      valueFrom:
        secretKeyRef: {name: {{ .root.Values.database.existingSecret }}, key: {{ .root.Values.database.secretKey }}}
    - {name: LOG_FORMAT, value: json}
  resources:
    {{- toYaml .root.Values.migrations.resources | nindent 4 }}
  securityContext:
    {{- toYaml .root.Values.containerSecurityContext | nindent 4 }}
  volumeMounts:
    - {name: tmp, mountPath: /tmp}
{{- end -}}
