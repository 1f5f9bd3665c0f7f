{{/*
Chart name, truncated to the 63 characters a Kubernetes label value allows.
*/}}
{{- define "imcluster.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Fully qualified app name: the release name, with the chart name appended unless the release name contains it.
Truncated to 63 characters because some Kubernetes name fields are limited to that (by the DNS naming spec).
*/}}
{{- define "imcluster.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{/*
Name of the operator's objects (Deployment, Services, RBAC): "<fullname>-operator".
*/}}
{{- define "imcluster.operatorName" -}}
{{- printf "%s-operator" (include "imcluster.fullname" .) | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
chart label value: name-version.
*/}}
{{- define "imcluster.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Labels on every object of the release.
*/}}
{{- define "imcluster.labels" -}}
helm.sh/chart: {{ include "imcluster.chart" . }}
app.kubernetes.io/name: {{ include "imcluster.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- if .Chart.AppVersion }}
app.kubernetes.io/version: {{ .Values.image.tag | default .Chart.AppVersion | quote }}
{{- end }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: imcluster
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{/*
Labels of the operator's objects.
*/}}
{{- define "imcluster.operatorLabels" -}}
{{ include "imcluster.labels" . }}
app.kubernetes.io/component: operator
{{- end }}

{{/*
Selector labels of the operator's pods. Immutable once installed: never add to them.
*/}}
{{- define "imcluster.operatorSelectorLabels" -}}
app.kubernetes.io/name: {{ include "imcluster.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: operator
{{- end }}

{{/*
The operator's selector labels as k=v,k=v (sorted): --operator-pod-labels, the pods the nodes'
NetworkPolicy admits to their admin port.
*/}}
{{- define "imcluster.operatorSelectorArg" -}}
{{- $pairs := list }}
{{- range $k, $v := (include "imcluster.operatorSelectorLabels" . | fromYaml) }}
{{- $pairs = append $pairs (printf "%s=%s" $k $v) }}
{{- end }}
{{- join "," $pairs }}
{{- end }}

{{/*
Name of the operator's ServiceAccount.
*/}}
{{- define "imcluster.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "imcluster.operatorName" .) .Values.serviceAccount.name }}
{{- else }}
{{- required "serviceAccount.name is required when serviceAccount.create is false" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/*
The operator image: repository:tag or repository@digest. The tag defaults to the chart's appVersion.
*/}}
{{- define "imcluster.image" -}}
{{- if .Values.image.digest }}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository (.Values.image.tag | default .Chart.AppVersion) }}
{{- end }}
{{- end }}

{{/*
Name of the IMCluster rendered when cluster.enabled is true.
*/}}
{{- define "imcluster.clusterName" -}}
{{- default (include "imcluster.fullname" .) .Values.cluster.name | trunc 63 | trimSuffix "-" }}
{{- end }}
