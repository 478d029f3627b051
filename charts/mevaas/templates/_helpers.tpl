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

{{/* The Secret holding one service's database credentials (see values database.*). */}}
{{- define "mevaas.databaseSecret" -}}
{{- printf "%s-%s" .root.Values.database.secretPrefix .component -}}
{{- end -}}

{{/* The chains as the chain registry reads them (mevaas_chain.registry: snake_case keys). */}}
{{- define "mevaas.chainRegistry" -}}
{{- $chains := list }}
{{- range . }}
{{- $chain := dict }}
{{- range $key, $value := . }}
{{- $_ := set $chain ($key | snakecase) $value }}
{{- end }}
{{- $chains = append $chains $chain }}
{{- end }}
{{- toYaml (dict "chains" $chains) }}
{{- end -}}

{{/* The environment every service container gets: only names its settings class
(mevaas_core.config.ServiceSettings and the service's subclass) or the code reads. */}}
{{- define "mevaas.commonEnv" -}}
- {name: SERVICE_NAME, value: {{ .component }}}
# Listen on every interface of the pod (the settings default to loopback for local runs).
- {name: GRPC_HOST, value: 0.0.0.0}
- {name: GRPC_PORT, value: {{ .root.Values.grpcPort | quote }}}
- {name: METRICS_HOST, value: 0.0.0.0}
- {name: METRICS_PORT, value: {{ .root.Values.metricsPort | quote }}}
- {name: NATS_URL, value: {{ .root.Values.nats.url | quote }}}
- name: DATABASE_URL
  valueFrom:
    secretKeyRef: {name: {{ include "mevaas.databaseSecret" . }}, key: {{ .root.Values.database.appUrlKey }}}
- {name: JWT_PUBLIC_KEYS, value: /etc/mevaas/jwt/public.pem}
- {name: LOG_LEVEL, value: {{ .root.Values.logLevel | quote }}}
{{- with .root.Values.otlpEndpoint }}
# Read by mevaas_core.telemetry and the OpenTelemetry SDK.
- {name: OTEL_TRACES_EXPORTER, value: otlp}
- {name: OTEL_EXPORTER_OTLP_ENDPOINT, value: {{ . | quote }}}
- {name: OTEL_SERVICE_NAME, value: {{ printf "mevaas-%s" $.component }}}
{{- end }}
{{- end -}}

{{/* `mevaas-migrate --service NAME` (mevaas_core.migrate_cli): DATABASE_URL is the schema owner's
DSN, or with database.provision an admin DSN plus the passwords the roles are (re)set to. */}}
{{- define "mevaas.migrationContainer" -}}
{{- $db := .root.Values.database }}
{{- $secret := include "mevaas.databaseSecret" . -}}
- name: migrate-{{ .component }}
  image: {{ include "mevaas.image" . }}
  imagePullPolicy: {{ .root.Values.image.pullPolicy }}
  command:
    {{- toYaml .root.Values.migrations.command | nindent 4 }}
  args: [--service, {{ .component }}{{ if $db.provision.enabled }}, --provision{{ end }}]
  env:
    {{- if $db.provision.enabled }}
    - name: DATABASE_URL
      valueFrom:
        secretKeyRef: {name: {{ $db.provision.adminSecret.name }}, key: {{ $db.provision.adminSecret.key }}}
    - name: DB_APP_PASSWORD
      valueFrom:
        secretKeyRef: {name: {{ $secret }}, key: {{ $db.provision.appPasswordKey }}}
    - name: DB_OWNER_PASSWORD
      valueFrom:
        secretKeyRef: {name: {{ $secret }}, key: {{ $db.provision.ownerPasswordKey }}}
    {{- else }}
    - name: DATABASE_URL
      valueFrom:
        secretKeyRef: {name: {{ $secret }}, key: {{ $db.ownerUrlKey }}}
    {{- end }}
  resources:
    {{- toYaml .root.Values.migrations.resources | nindent 4 }}
  securityContext:
    {{- toYaml .root.Values.containerSecurityContext | nindent 4 }}
  volumeMounts:
    - {name: tmp, mountPath: /tmp}
{{- end -}}
