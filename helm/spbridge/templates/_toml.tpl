{{/*
A small TOML writer for the `config:` tree.

Why not Helm's toToml: Helm reads every YAML number as a float64, and toToml writes
1048576 as `1.048576e+06`, which spbridge's integer settings reject. Here whole numbers
are written as integers, other numbers as floats, strings as (JSON-escaped, hence valid
TOML) basic strings, lists of maps as arrays of tables, and empty maps and nulls are left
out, so a section such as [telemetry] is only written once it has a key.
*/}}

{{- define "spbridge.toml.key" -}}
{{- if regexMatch "^[A-Za-z0-9_-]+$" . -}}{{ . }}{{- else -}}{{ toJson . }}{{- end -}}
{{- end -}}

{{- define "spbridge.toml.isTableArray" -}}
{{- if and (kindIs "slice" .) (gt (len .) 0) -}}
{{- $all := true -}}
{{- range . -}}{{- if not (kindIs "map" .) -}}{{- $all = false -}}{{- end -}}{{- end -}}
{{- if $all -}}true{{- end -}}
{{- end -}}
{{- end -}}

{{- define "spbridge.toml.value" -}}
{{- $v := . -}}
{{- if kindIs "string" $v -}}
{{- toJson $v -}}
{{- else if kindIs "bool" $v -}}
{{- ternary "true" "false" $v -}}
{{- else if or (kindIs "float64" $v) (kindIs "float32" $v) -}}
{{- if eq (float64 $v) (floor $v) -}}{{ int64 $v }}{{- else -}}{{ $v }}{{- end -}}
{{- else if or (kindIs "int" $v) (kindIs "int64" $v) (kindIs "int32" $v) (kindIs "uint64" $v) -}}
{{- $v -}}
{{- else if kindIs "slice" $v -}}
[{{- range $i, $e := $v -}}{{- if $i }}, {{ end -}}{{- include "spbridge.toml.value" $e -}}{{- end -}}]
{{- else if kindIs "map" $v -}}
{ {{- $first := true -}}
{{- range $k, $e := $v -}}
{{- if not (kindIs "invalid" $e) -}}
{{- if not $first }}, {{ else }} {{ end -}}{{- $first = false -}}
{{- include "spbridge.toml.key" $k }} = {{ include "spbridge.toml.value" $e -}}
{{- end -}}
{{- end }} }
{{- else -}}
{{- fail (printf "config: value %v (%s) cannot be written as TOML" $v (kindOf $v)) -}}
{{- end -}}
{{- end -}}

{{/* Input: dict "table" <map> "path" <list of already-quoted keys>. */}}
{{- define "spbridge.toml.table" -}}
{{- $t := .table -}}
{{- $path := .path -}}
{{- range $k, $v := $t -}}
{{- if not (or (kindIs "invalid" $v) (kindIs "map" $v) (include "spbridge.toml.isTableArray" $v)) }}
{{ include "spbridge.toml.key" $k }} = {{ include "spbridge.toml.value" $v }}
{{- end -}}
{{- end -}}
{{- range $k, $v := $t -}}
{{- if and (kindIs "map" $v) (gt (len $v) 0) -}}
{{- $sub := append $path (include "spbridge.toml.key" $k) }}

[{{ join "." $sub }}]
{{- include "spbridge.toml.table" (dict "table" $v "path" $sub) -}}
{{- end -}}
{{- end -}}
{{- range $k, $v := $t -}}
{{- if include "spbridge.toml.isTableArray" $v -}}
{{- $sub := append $path (include "spbridge.toml.key" $k) -}}
{{- range $e := $v }}

[[{{ join "." $sub }}]]
{{- include "spbridge.toml.table" (dict "table" $e "path" $sub) -}}
{{- end -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{/*
The effective configuration: values' `config:` plus the keys the chart owns
(http.listen from containerPort; routing.directory when a provider directory is mounted).
store.url / broker.url are left out when a Secret supplies them (SPBRIDGE_STORE__URL,
SPBRIDGE_BROKER__URL), so the file never shows a URL that is not used.
*/}}
{{- define "spbridge.config" -}}
{{- $config := deepCopy .Values.config -}}
{{- $http := default (dict) $config.http -}}
{{- $_ := set $http "listen" (printf "0.0.0.0:%d" (int .Values.containerPort)) -}}
{{- $_ := set $config "http" $http -}}
{{- if and .Values.store.existingSecret $config.store -}}
{{- $_ := unset $config.store "url" -}}
{{- end -}}
{{- if and .Values.broker.existingSecret $config.broker -}}
{{- $_ := unset $config.broker "url" -}}
{{- end -}}
{{- if or .Values.providerDirectory.existingConfigMap .Values.providerDirectory.resources -}}
{{- $routing := default (dict) $config.routing -}}
{{- $_ := set $routing "directory" .Values.providerDirectory.mountPath -}}
{{- $_ := set $config "routing" $routing -}}
{{- end -}}
{{- $config | toJson -}}
{{- end -}}

{{- define "spbridge.toml" -}}
# spbridge.toml, rendered by the Helm chart from the `config:` values.
# SPBRIDGE_<SECTION>__<KEY> environment variables override it (the store and broker URLs
# come that way from Secrets).
{{- include "spbridge.toml.table" (dict "table" (include "spbridge.config" . | fromJson) "path" (list)) }}
{{ end -}}
