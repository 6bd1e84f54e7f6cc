{{/* Chart name, truncated to the 63 characters a DNS label allows. */}}
{{- define "resnest-serve.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* Resource base name: fullnameOverride, else release name (+ chart name unless it contains it). */}}
{{- define "resnest-serve.fullname" -}}
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

{{- define "resnest-serve.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* Selector labels: stable for the life of the release. */}}
{{- define "resnest-serve.selectorLabels" -}}
app.kubernetes.io/name: {{ include "resnest-serve.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: inference
{{- end -}}

{{- define "resnest-serve.labels" -}}
helm.sh/chart: {{ include "resnest-serve.chart" . }}
{{ include "resnest-serve.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: rlaunch
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{- define "resnest-serve.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "resnest-serve.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{/* Image reference; the default name is the `rlaunch build` image of the device family. */}}
{{- define "resnest-serve.image" -}}
{{- $family := include "resnest-serve.serverDevice" . -}}
{{- $name := default (printf "rlaunch-%s" $family) .Values.image.repository -}}
{{- $repo := $name -}}
{{- if .Values.image.registry -}}
{{- $repo = printf "%s/%s" (trimSuffix "/" .Values.image.registry) $name -}}
{{- end -}}
{{- if .Values.image.digest -}}
{{- printf "%s@%s" $repo .Values.image.digest -}}
{{- else -}}
{{- printf "%s:%s" $repo (default .Chart.AppVersion .Values.image.tag) -}}
{{- end -}}
{{- end -}}

{{/* The extended resource that carries the accelerator, empty for cpu. */}}
{{- define "resnest-serve.deviceResource" -}}
{{- $resources := dict "gpu" "nvidia.com/gpu" "ascend310" "huawei.com/Ascend310" "ascend310p" "huawei.com/Ascend310P" -}}
{{- get $resources .Values.device -}}
{{- end -}}

{{/* --device of the server for the chart's device value. */}}
{{- define "resnest-serve.serverDevice" -}}
{{- if eq .Values.device "gpu" -}}gpu{{- else if hasPrefix "ascend" .Values.device -}}ascend{{- else -}}cpu{{- end -}}
{{- end -}}

{{/* Node labels the device needs, merged under the user's nodeSelector. */}}
{{- define "resnest-serve.nodeSelector" -}}
{{- $selector := dict -}}
{{- if eq .Values.device "gpu" -}}
{{- $_ := set $selector "nvidia.com/gpu.present" "true" -}}
{{- else if eq .Values.device "ascend310" -}}
{{- $_ := set $selector "accelerator" (default "huawei-Ascend310" .Values.ascend.nodeSelectorValue) -}}
{{- else if eq .Values.device "ascend310p" -}}
{{- $_ := set $selector "accelerator" (default "huawei-Ascend310P" .Values.ascend.nodeSelectorValue) -}}
{{- end -}}
{{- $merged := merge (deepCopy .Values.nodeSelector) $selector -}}
{{- if $merged }}{{ toYaml $merged }}{{ end -}}
{{- end -}}

{{/* The inference engine: model.engine, else onnxruntime for ONNX and mindspore otherwise (the
     server's own --engine auto rule; values.schema.json rejects combinations it cannot run). */}}
{{- define "resnest-serve.engine" -}}
{{- if .Values.model.engine -}}{{ .Values.model.engine }}{{- else if eq .Values.model.format "onnx" -}}onnxruntime{{- else -}}mindspore{{- end -}}
{{- end -}}

{{/* The server's command line, one list item per argument (quoted). */}}
{{- define "resnest-serve.args" -}}
{{- $s := .Values.server -}}
{{- range .Values.model.files }}
- --model
- {{ . | quote }}
{{- end }}
- --engine
- {{ include "resnest-serve.engine" . | quote }}
- --model-name
- {{ .Values.model.name | quote }}
- --device
- {{ include "resnest-serve.serverDevice" . | quote }}
- --device-id
- {{ .Values.deviceId | quote }}
- --host
- "0.0.0.0"
- --port
- {{ $s.port | quote }}
{{- if .Values.model.arch }}
- --arch
- {{ .Values.model.arch | quote }}
{{- end }}
{{- if .Values.model.numClasses }}
- --num-classes
- {{ .Values.model.numClasses | quote }}
{{- end }}
{{- if .Values.model.imageSize }}
- --image-size
- {{ .Values.model.imageSize | quote }}
{{- end }}
{{- if .Values.model.labels }}
- --labels
- "/etc/resnest-serve/labels.txt"
{{- end }}
- --max-batch-size
- {{ $s.maxBatchSize | quote }}
- --max-queue-delay-ms
- {{ $s.maxQueueDelayMs | quote }}
- --max-queue-size
- {{ $s.maxQueueSize | quote }}
- --max-request-batch
- {{ $s.maxRequestBatch | quote }}
- --max-body-mb
- {{ $s.maxBodyMb | quote }}
- --max-image-pixels
- {{ $s.maxImagePixels | int64 | quote }}
- --threads
- {{ $s.threads | quote }}
- --decode-threads
- {{ $s.decodeThreads | quote }}
- --shutdown-timeout
- {{ $s.shutdownTimeoutSeconds | quote }}
- --log-level
- {{ $s.logLevel | quote }}
{{- if $s.accessLog }}
- --access-log
{{- end }}
{{- range $s.extraArgs }}
- {{ . | quote }}
{{- end }}
{{- end -}}
