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

{{/* <registry>/mevaas-<component>:<tag>, or the override; @<digest> when image.digests has one. */}}
{{- define "mevaas.image" -}}
{{- $override := index .root.Values.image.overrides .component -}}
{{- $digest := index .root.Values.image.digests .component -}}
{{- $ref := $override | default (printf "%s/mevaas-%s:%s" .root.Values.image.registry .component (default .root.Chart.AppVersion .root.Values.image.tag)) -}}
{{- if $digest -}}
{{- printf "%s@%s" $ref $digest -}}
{{- else -}}
{{- $ref -}}
{{- end -}}
{{- end -}}

{{/* ServiceAccount annotations: the chart-wide ones under the component's own. */}}
{{- define "mevaas.serviceAccountAnnotations" -}}
{{- $annotations := mergeOverwrite (deepCopy .root.Values.serviceAccount.annotations) (deepCopy (default (dict) .own)) -}}
{{- with $annotations }}
annotations:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- end -}}

{{- define "mevaas.caConfigMap" -}}
{{- printf "%s-ca" (include "mevaas.fullname" .) -}}
{{- end -}}

{{/* A service's settings: serviceDefaults overlaid with services.<name>. */}}
{{- define "mevaas.serviceConfig" -}}
{{- toYaml (mergeOverwrite (deepCopy .root.Values.serviceDefaults) (deepCopy (index .root.Values.services .component))) -}}
{{- end -}}

{{/* The gateway's settings: serviceDefaults overlaid with gateway (its own keys ride along). */}}
{{- define "mevaas.gatewayConfig" -}}
{{- toYaml (mergeOverwrite (deepCopy .Values.serviceDefaults) (deepCopy .Values.gateway)) -}}
{{- end -}}

{{/* The gateway's UPSTREAMS: each enabled service's Service address (portfolio is analytics'). */}}
{{- define "mevaas.gatewayUpstreams" -}}
{{- $upstreams := dict }}
{{- range $component := list "tenancy" "strategy" "risk" "execution" "analytics" }}
{{- if (index $.Values.services $component).enabled }}
{{- $name := include "mevaas.name" (dict "root" $ "component" $component) }}
{{- $_ := set $upstreams $component (printf "%s.%s.svc:%v" $name $.Release.Namespace $.Values.grpcPort) }}
{{- end }}
{{- end }}
{{- toJson $upstreams }}
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
(mevaas_core.config.ServiceSettings and the service's subclass) or the code reads. Key material is
never here: it is in files under SECRETS_DIR (the `secrets` volume, mevaas.secretsVolume). */}}
{{- define "mevaas.commonEnv" -}}
{{- $v := .root.Values }}
- {name: SERVICE_NAME, value: {{ .component }}}
# Listen on every interface of the pod (the settings default to loopback for local runs).
- {name: GRPC_HOST, value: 0.0.0.0}
- {name: GRPC_PORT, value: {{ $v.grpcPort | quote }}}
- {name: METRICS_HOST, value: 0.0.0.0}
- {name: METRICS_PORT, value: {{ $v.metricsPort | quote }}}
{{- if not $v.nats.credentials.enabled }}
- {name: NATS_URL, value: {{ $v.nats.url | quote }}}
{{- end }}
- {name: NATS_STREAM_REPLICAS, value: {{ $v.nats.streamReplicas | quote }}}
{{- with include "mevaas.natsCaFile" .root }}
- {name: NATS_TLS_CA_FILE, value: {{ . }}}
{{- end }}
{{- if $v.tls.enabled }}
- {name: GRPC_TLS_CERT_FILE, value: /etc/mevaas/tls/tls.crt}
- {name: GRPC_TLS_KEY_FILE, value: /etc/mevaas/tls/tls.key}
- {name: GRPC_HEALTH_PORT, value: {{ $v.tls.healthPort | quote }}}
# The service's own gRPC clients (execution's tenancy calls) verify the other services with it.
- {name: GRPC_TLS_CA_FILE, value: {{ include "mevaas.natsCaFile" .root }}}
{{- end }}
- {name: SECRETS_DIR, value: /etc/mevaas/secrets}
- {name: JWT_PUBLIC_KEYS, value: /etc/mevaas/jwt/public.pem}
- {name: LOG_LEVEL, value: {{ $v.logLevel | quote }}}
{{- with $v.otlp.endpoint }}
# Read by mevaas_core.telemetry and the OpenTelemetry SDK.
- {name: OTEL_TRACES_EXPORTER, value: otlp}
- {name: OTEL_EXPORTER_OTLP_ENDPOINT, value: {{ . | quote }}}
- {name: OTEL_SERVICE_NAME, value: {{ printf "mevaas-%s" $.component }}}
{{- end }}
{{- end -}}

{{/* The CA file that verifies a tls:// NATS server: the caBundle ConfigMap, else the service
certificate's ca.crt; empty (system CAs) without either. */}}
{{- define "mevaas.natsCaFile" -}}
{{- if .Values.tls.caBundle -}}
/etc/mevaas/ca/ca.crt
{{- else if .Values.tls.enabled -}}
/etc/mevaas/tls/ca.crt
{{- end -}}
{{- end -}}

{{/* The files of SECRETS_DIR for one service: each Secret key projected as the settings field it sets. */}}
{{- define "mevaas.secretsVolume" -}}
{{- $v := .root.Values }}
- name: secrets
  projected:
    defaultMode: 0440
    sources:
      - secret:
          name: {{ include "mevaas.databaseSecret" . }}
          items:
            - {key: {{ $v.database.appUrlKey }}, path: database_url}
            # The service's platform role (cross-tenant jobs only): never given to tenant workers.
            - {key: {{ $v.database.platformUrlKey }}, path: platform_database_url}
      {{- if $v.nats.credentials.enabled }}
      - secret:
          name: {{ printf "%s-%s" $v.nats.credentials.secretPrefix .component }}
          items: [{key: {{ $v.nats.credentials.key }}, path: nats_url}]
      {{- end }}
      {{- if eq .component "execution" }}
      # The KEK ring itself (`base64` or `id1:b64,id2:b64`).
      - secret:
          name: {{ $v.execution.kekSecret }}
          items: [{key: {{ $v.execution.kekKey }}, path: execution_kek}]
      # The fair-ordering log's signing seed: receipts verify across restarts and replicas.
      - secret:
          name: {{ $v.execution.fairOrderingKeySecret }}
          items: [{key: {{ $v.execution.fairOrderingKeyKey }}, path: fair_ordering_signing_key}]
      {{- end }}
      {{- if eq .component "tenancy" }}
      {{- with $v.auth.bootstrapAdminKey }}
      - secret:
          name: {{ .name }}
          items: [{key: {{ .key }}, path: bootstrap_admin_key}]
      {{- end }}
      {{- end }}
{{- end -}}

{{/* TLS and CA volumes and mounts of a pod (empty when TLS is off). */}}
{{- define "mevaas.tlsVolumes" -}}
{{- $v := .root.Values }}
{{- if $v.tls.enabled }}
- name: tls
  secret:
    secretName: {{ printf "%s-%s" $v.tls.secretPrefix .component }}
    defaultMode: 0440
{{- end }}
{{- if $v.tls.caBundle }}
- name: ca
  configMap:
    name: {{ include "mevaas.caConfigMap" .root }}
{{- end }}
{{- end -}}

{{- define "mevaas.tlsMounts" -}}
{{- $v := .root.Values }}
{{- if $v.tls.enabled }}
- {name: tls, mountPath: /etc/mevaas/tls, readOnly: true}
{{- end }}
{{- if $v.tls.caBundle }}
- {name: ca, mountPath: /etc/mevaas/ca, readOnly: true}
{{- end }}
{{- end -}}

{{/* `mevaas-migrate --service NAME` (mevaas_core.migrate_cli): DATABASE_URL is the schema owner's
DSN, or with database.provision an admin DSN plus the passwords the roles are (re)set to; all of
them files in SECRETS_DIR (volume secrets-<component>). */}}
{{- define "mevaas.migrationContainer" -}}
- name: migrate-{{ .component }}
  image: {{ include "mevaas.image" . }}
  imagePullPolicy: {{ .root.Values.image.pullPolicy }}
  command:
    {{- toYaml .root.Values.migrations.command | nindent 4 }}
  args: [--service, {{ .component }}{{ if .root.Values.database.provision.enabled }}, --provision{{ end }}]
  env:
    - {name: SECRETS_DIR, value: /etc/mevaas/secrets}
  resources:
    {{- toYaml .root.Values.migrations.resources | nindent 4 }}
  securityContext:
    {{- toYaml .root.Values.containerSecurityContext | nindent 4 }}
  volumeMounts:
    - {name: tmp, mountPath: /tmp}
    - {name: secrets-{{ .component }}, mountPath: /etc/mevaas/secrets, readOnly: true}
{{- end -}}

{{- define "mevaas.migrationSecrets" -}}
{{- $db := .root.Values.database }}
{{- $secret := include "mevaas.databaseSecret" . }}
- name: secrets-{{ .component }}
  projected:
    defaultMode: 0440
    sources:
      {{- if $db.provision.enabled }}
      - secret:
          name: {{ $db.provision.adminSecret.name }}
          items: [{key: {{ $db.provision.adminSecret.key }}, path: database_url}]
      - secret:
          name: {{ $secret }}
          items:
            - {key: {{ $db.provision.appPasswordKey }}, path: db_app_password}
            - {key: {{ $db.provision.ownerPasswordKey }}, path: db_owner_password}
            - {key: {{ $db.provision.platformPasswordKey }}, path: db_platform_password}
      {{- else }}
      - secret:
          name: {{ $secret }}
          items: [{key: {{ $db.ownerUrlKey }}, path: database_url}]
      {{- end }}
{{- end -}}

{{/* Egress to the OpenTelemetry collector when traces are exported (an egress rule list item). */}}
{{- define "mevaas.otlpEgress" -}}
{{- $o := .Values.otlp }}
{{- if $o.endpoint }}
- to:
    {{- if $o.cidr }}
    - ipBlock: {cidr: {{ $o.cidr }}}
    {{- else }}
    - namespaceSelector:
        matchLabels:
          kubernetes.io/metadata.name: {{ $o.namespace }}
      podSelector:
        matchLabels:
          {{- toYaml $o.podLabels | nindent 10 }}
    {{- end }}
  ports:
    {{- range $o.ports }}
    - {port: {{ . }}, protocol: TCP}
    {{- end }}
{{- end }}
{{- end -}}

{{- /* One lifecycle hook Job (templates/lifecycle-hooks.yaml). */}}
{{- define "mevaas.lifecycleJob" -}}
{{- $root := .root }}
---
apiVersion: batch/v1
kind: Job
metadata:
  name: {{ .name }}
  namespace: {{ $root.Release.Namespace }}
  labels:
    {{- include "mevaas.componentLabels" .ctx | nindent 4 }}
  annotations:
    helm.sh/hook: {{ .hook }}
    helm.sh/hook-weight: {{ .weight | quote }}
    helm.sh/hook-delete-policy: before-hook-creation,hook-succeeded
    checkov.io/skip1: CKV_K8S_38=a Kubernetes API client; its token is its identity
spec:
  backoffLimit: 2
  activeDeadlineSeconds: {{ .deadline }}
  ttlSecondsAfterFinished: 86400
  template:
    metadata:
      labels:
        {{- include "mevaas.componentLabels" .ctx | nindent 8 }}
    spec:
      serviceAccountName: {{ include "mevaas.name" .ctx }}
      restartPolicy: Never
      enableServiceLinks: false
      {{- with $root.Values.imagePullSecrets }}
      imagePullSecrets:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      securityContext:
        {{- toYaml $root.Values.podSecurityContext | nindent 8 }}
      containers:
        - name: {{ index .args 0 }}
          image: {{ include "mevaas.image" (dict "root" $root "component" "operator") }}
          imagePullPolicy: {{ $root.Values.image.pullPolicy }}
          command: [python, -m, mevaas_operator.lifecycle]
          args:
            {{- toYaml .args | nindent 12 }}
          resources:
            {{- toYaml $root.Values.operator.lifecycle.resources | nindent 12 }}
          securityContext:
            {{- toYaml $root.Values.containerSecurityContext | nindent 12 }}
          volumeMounts:
            - {name: tmp, mountPath: /tmp}
            {{- if .crds }}
            - {name: crds, mountPath: /etc/mevaas/crds, readOnly: true}
            {{- end }}
      volumes:
        - name: tmp
          emptyDir: {sizeLimit: 16Mi}
        {{- if .crds }}
        - name: crds
          configMap:
            name: {{ include "mevaas.name" .ctx }}-crds
        {{- end }}
{{- end -}}
