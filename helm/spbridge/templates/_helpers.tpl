{{/*
Names, labels and the small computed values shared by the templates.
*/}}

{{- define "spbridge.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "spbridge.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- $name := default .Chart.Name .Values.nameOverride -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{- define "spbridge.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "spbridge.selectorLabels" -}}
app.kubernetes.io/name: {{ include "spbridge.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "spbridge.labels" -}}
helm.sh/chart: {{ include "spbridge.chart" . }}
{{ include "spbridge.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/component: fhir-intake
app.kubernetes.io/part-of: spbridge
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{- define "spbridge.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "spbridge.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{- define "spbridge.image" -}}
{{- $tag := default .Chart.AppVersion .Values.image.tag -}}
{{- if .Values.image.digest -}}
{{- printf "%s:%s@%s" .Values.image.repository $tag .Values.image.digest -}}
{{- else -}}
{{- printf "%s:%s" .Values.image.repository $tag -}}
{{- end -}}
{{- end -}}

{{/* The store is SQLite when no database Secret is given and config.store.url is sqlite:. */}}
{{- define "spbridge.usesSqlite" -}}
{{- if and (not .Values.store.existingSecret) (hasPrefix "sqlite:" (toString .Values.config.store.url)) -}}
true
{{- end -}}
{{- end -}}

{{/* Probes and the ServiceMonitor speak HTTPS when the listener has a TLS Secret. */}}
{{- define "spbridge.scheme" -}}
{{- if .Values.tls.existingSecret -}}HTTPS{{- else -}}HTTP{{- end -}}
{{- end -}}

{{/*
Pod termination budget: preStop sleep (endpoints removed) + HTTP drain
(config.http.shutdown_grace_secs) + outbox relay drain + a small margin for closing the
store. An explicit terminationGracePeriodSeconds wins.
*/}}
{{- define "spbridge.terminationGracePeriodSeconds" -}}
{{- if kindIs "invalid" .Values.terminationGracePeriodSeconds -}}
{{- add (int .Values.preStopSleepSeconds) (int .Values.config.http.shutdown_grace_secs) (int .Values.relayDrainSeconds) 5 -}}
{{- else -}}
{{- int .Values.terminationGracePeriodSeconds -}}
{{- end -}}
{{- end -}}

{{/* Cross-field checks that values.schema.json cannot express. */}}
{{- define "spbridge.checks" -}}
{{- if .Values.autoscaling.enabled -}}
{{- if not (or .Values.autoscaling.targetCPUUtilizationPercentage .Values.autoscaling.targetMemoryUtilizationPercentage .Values.autoscaling.metrics) -}}
{{- fail "autoscaling.enabled needs a target: targetCPUUtilizationPercentage, targetMemoryUtilizationPercentage or metrics" -}}
{{- end -}}
{{- if gt (int .Values.autoscaling.minReplicas) (int .Values.autoscaling.maxReplicas) -}}
{{- fail (printf "autoscaling.minReplicas (%d) must not exceed autoscaling.maxReplicas (%d)" (int .Values.autoscaling.minReplicas) (int .Values.autoscaling.maxReplicas)) -}}
{{- end -}}
{{- end -}}
{{- if and .Values.providerDirectory.existingConfigMap .Values.providerDirectory.resources -}}
{{- fail "providerDirectory: set either existingConfigMap or resources, not both" -}}
{{- end -}}
{{- range $file, $_ := .Values.providerDirectory.resources -}}
{{- if not (regexMatch "^[A-Za-z0-9][A-Za-z0-9._-]*\\.json$" $file) -}}
{{- fail (printf "providerDirectory.resources: file name %q must end in .json and use [A-Za-z0-9._-]" $file) -}}
{{- end -}}
{{- end -}}
{{- if not (le (int .Values.preStopSleepSeconds) (int (include "spbridge.terminationGracePeriodSeconds" .))) -}}
{{- fail "terminationGracePeriodSeconds must be at least preStopSleepSeconds" -}}
{{- end -}}
{{- end -}}
