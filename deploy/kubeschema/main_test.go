package main

import (
	"encoding/json"
	"testing"
)

const swagger = `{"definitions": {
 "io.k8s.api.apps.v1.DaemonSet": {"type": "object", "x-kubernetes-group-version-kind": [{"group": "apps", "kind": "DaemonSet", "version": "v1"}],
   "properties": {"spec": {"$ref": "#/definitions/io.k8s.api.apps.v1.DaemonSetSpec"}}},
 "io.k8s.api.apps.v1.DaemonSetSpec": {"type": "object", "properties": {
   "maxUnavailable": {"$ref": "#/definitions/io.k8s.apimachinery.pkg.util.intstr.IntOrString"},
   "cpu": {"$ref": "#/definitions/io.k8s.apimachinery.pkg.api.resource.Quantity"},
   "self": {"$ref": "#/definitions/io.k8s.api.apps.v1.DaemonSetSpec"}}},
 "io.k8s.apimachinery.pkg.util.intstr.IntOrString": {"type": "string", "format": "int-or-string"},
 "io.k8s.apimachinery.pkg.api.resource.Quantity": {"type": "string"},
 "io.k8s.api.core.v1.Service": {"type": "object", "x-kubernetes-group-version-kind": [{"group": "", "kind": "Service", "version": "v1"}],
   "properties": {"kind": {"type": "string"}}}
}}`

func TestConvert(t *testing.T) {
	files, err := convert([]byte(swagger))
	if err != nil {
		t.Fatal(err)
	}
	if len(files) != 2 || files["daemonset-apps-v1.json"] == nil || files["service-v1.json"] == nil {
		t.Fatalf("files %v", keys(files))
	}
	var ds map[string]any
	if err := json.Unmarshal(files["daemonset-apps-v1.json"], &ds); err != nil {
		t.Fatal(err)
	}
	if ds["additionalProperties"] != false {
		t.Fatalf("not strict: %v", ds)
	}
	spec := ds["properties"].(map[string]any)["spec"].(map[string]any)
	props := spec["properties"].(map[string]any)
	if spec["additionalProperties"] != false || props["maxUnavailable"].(map[string]any)["oneOf"] == nil ||
		props["cpu"].(map[string]any)["oneOf"] == nil {
		t.Fatalf("inlined spec: %v", spec)
	}
	if len(props["self"].(map[string]any)) != 0 {
		t.Fatalf("a recursive reference must become the empty schema, got %v", props["self"])
	}
	if _, err := convert([]byte(`{"definitions": {"x": {"x-kubernetes-group-version-kind": [{"kind": "X", "version": "v1"}], "properties": {"a": {"$ref": "#/definitions/missing"}}}}}`)); err == nil {
		t.Fatal("an unresolved $ref was accepted")
	}
	if _, err := convert([]byte(`{}`)); err == nil {
		t.Fatal("a document without definitions was accepted")
	}
}

func keys(m map[string][]byte) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	return out
}
