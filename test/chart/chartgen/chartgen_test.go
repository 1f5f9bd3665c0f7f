package chartgen

import (
	"reflect"
	"strings"
	"testing"

	"sigs.k8s.io/yaml"
)

func TestChartgenToJSONSchema(t *testing.T) {
	tests := []struct {
		name string
		in   string
		want string
	}{
		{
			name: "fixed properties get additionalProperties false",
			in:   `{type: object, properties: {a: {type: string}}}`,
			want: `{type: object, properties: {a: {type: string}}, additionalProperties: false}`,
		},
		{
			name: "maps keep their value schema",
			in:   `{type: object, additionalProperties: {type: string}}`,
			want: `{type: object, additionalProperties: {type: string}}`,
		},
		{
			name: "preserve-unknown-fields stays open",
			in:   `{type: object, properties: {a: {type: string}}, x-kubernetes-preserve-unknown-fields: true}`,
			want: `{type: object, properties: {a: {type: string}}}`,
		},
		{
			name: "nested objects, arrays and anyOf are converted",
			in:   `{type: array, items: {type: object, properties: {b: {anyOf: [{type: integer}, {type: string}], x-kubernetes-int-or-string: true}}}}`,
			want: `{type: array, items: {type: object, properties: {b: {anyOf: [{type: integer}, {type: string}]}}, additionalProperties: false}}`,
		},
		{
			name: "a defaulted field is not required",
			in:   `{type: object, required: [a, b], properties: {a: {type: string, default: x}, b: {type: string}}}`,
			want: `{type: object, required: [b], properties: {a: {type: string, default: x}, b: {type: string}}, additionalProperties: false}`,
		},
		{
			name: "required disappears when every field has a default",
			in:   `{type: object, required: [a], properties: {a: {type: integer, default: 1}}}`,
			want: `{type: object, properties: {a: {type: integer, default: 1}}, additionalProperties: false}`,
		},
		{
			name: "nullable becomes a null union, formats and CEL rules are dropped",
			in:   `{type: string, nullable: true, format: date-time, x-kubernetes-validations: [{rule: "self == oldSelf"}]}`,
			want: `{type: [string, "null"]}`,
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var in, want map[string]any
			if err := yaml.Unmarshal([]byte(tc.in), &in); err != nil {
				t.Fatal(err)
			}
			if err := yaml.Unmarshal([]byte(tc.want), &want); err != nil {
				t.Fatal(err)
			}
			if got := toJSONSchema(in); !reflect.DeepEqual(got, want) {
				t.Fatalf("toJSONSchema(%s)\n got %v\nwant %v", tc.in, got, want)
			}
		})
	}
}

func TestChartgenCRDTemplate(t *testing.T) {
	crd := `---
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata:
  annotations:
    controller-gen.kubebuilder.io/version: v0.23.0
  name: things.example.com
spec:
  group: example.com
  names:
    kind: Thing
    plural: things
  scope: Namespaced
  versions:
  - name: v1
    served: true
    storage: true
    schema:
      openAPIV3Schema:
        description: 'Uses {{ braces }} in text'
        type: object
`
	got, err := CRDTemplateFrom([]byte(crd))
	if err != nil {
		t.Fatal(err)
	}
	s := string(got)
	for _, want := range []string{
		"{{- if .Values.crds.install }}\napiVersion: apiextensions.k8s.io/v1\n",
		"  annotations:\n    {{- if .Values.crds.keep }}\n    helm.sh/resource-policy: keep\n    {{- end }}\n    controller-gen.kubebuilder.io/version: v0.23.0\n",
		"  name: things.example.com\n  labels:\n    {{- include \"imcluster.labels\" . | nindent 4 }}\nspec:\n",
		"'Uses {{`{{`}} braces {{`}}`}} in text'",
	} {
		if !strings.Contains(s, want) {
			t.Errorf("template lacks %q:\n%s", want, s)
		}
	}
	if !strings.HasSuffix(s, "        type: object\n{{- end }}\n") {
		t.Errorf("template does not end with the CRD and {{- end }}:\n%s", s)
	}
	if _, err := CRDTemplateFrom([]byte("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: x\n")); err == nil {
		t.Error("a ConfigMap was accepted as the CRD")
	}
}
