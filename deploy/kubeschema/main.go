// Command kubeschema turns the Kubernetes OpenAPI v2 document (api/openapi-spec/swagger.json of the
// k8s.io/kubernetes module) into the standalone, strict JSON schemas that kubeconform reads: one file
// per kind, named <kind>[-<group>]-<version>.json, every $ref inlined, additionalProperties false on
// every object with declared properties. CI runs it to check the Helm chart (deploy/helm) against the
// schemas of a current Kubernetes release fetched through the Go module proxy; docs/dependencies.md
// says why.
//
// It only reads the document and writes schema files; it never fetches anything.
//
//	go run ./deploy/kubeschema -in swagger.json -out DIR
package main

import (
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
)

const (
	refPrefix = "#/definitions/"
	// quantity is a string in the document, but the API server (and every manifest) also takes a
	// plain number: "cpu: 1".
	quantity = "io.k8s.apimachinery.pkg.api.resource.Quantity"
)

func main() {
	in := flag.String("in", "", "the Kubernetes swagger.json")
	out := flag.String("out", "", "directory for the schemas (created)")
	flag.Parse()
	if *in == "" || *out == "" {
		fmt.Fprintln(os.Stderr, "usage: kubeschema -in swagger.json -out DIR")
		os.Exit(2)
	}
	n, err := run(*in, *out)
	if err != nil {
		fmt.Fprintln(os.Stderr, "kubeschema:", err)
		os.Exit(1)
	}
	fmt.Printf("kubeschema: %d schemas in %s\n", n, *out)
}

func run(in, out string) (int, error) {
	data, err := os.ReadFile(in)
	if err != nil {
		return 0, err
	}
	files, err := convert(data)
	if err != nil {
		return 0, err
	}
	if err := os.MkdirAll(out, 0o755); err != nil {
		return 0, err
	}
	names := make([]string, 0, len(files))
	for name := range files {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		if err := os.WriteFile(filepath.Join(out, name), files[name], 0o644); err != nil {
			return 0, err
		}
	}
	return len(files), nil
}

type gvk struct {
	Group   string `json:"group"`
	Version string `json:"version"`
	Kind    string `json:"kind"`
}

// convert returns the schema files for every definition that names a group, version and kind.
func convert(swagger []byte) (map[string][]byte, error) {
	var doc struct {
		Definitions map[string]map[string]any `json:"definitions"`
	}
	if err := json.Unmarshal(swagger, &doc); err != nil {
		return nil, fmt.Errorf("swagger: %w", err)
	}
	if len(doc.Definitions) == 0 {
		return nil, errors.New("swagger: no definitions")
	}
	files := map[string][]byte{}
	for name, def := range doc.Definitions {
		raw, ok := def["x-kubernetes-group-version-kind"]
		if !ok {
			continue
		}
		b, _ := json.Marshal(raw)
		var kinds []gvk
		if err := json.Unmarshal(b, &kinds); err != nil {
			return nil, fmt.Errorf("%s: x-kubernetes-group-version-kind: %w", name, err)
		}
		schema, err := inline(doc.Definitions, def, map[string]bool{name: true})
		if err != nil {
			return nil, fmt.Errorf("%s: %w", name, err)
		}
		for _, k := range kinds {
			file := fileName(k)
			if _, dup := files[file]; dup {
				continue // the same kind under an older definition name; the first one wins
			}
			one := schema.(map[string]any)
			one["$schema"] = "http://json-schema.org/schema#"
			b, err := json.Marshal(one)
			if err != nil {
				return nil, err
			}
			files[file] = b
		}
	}
	return files, nil
}

// fileName follows kubeconform's {{.ResourceKind}}{{.KindSuffix}}: the lower-case kind, then the
// group's first label (none for the core group), then the version.
func fileName(k gvk) string {
	name := strings.ToLower(k.Kind)
	if k.Group != "" {
		name += "-" + strings.ToLower(strings.Split(k.Group, ".")[0])
	}
	return name + "-" + strings.ToLower(k.Version) + ".json"
}

// inline returns a copy of v with every $ref replaced by its definition, made strict and nullable
// the way kubeconform's published schemas are. A reference back into a definition being inlined
// (only the recursive CRD schema types have one) becomes the empty schema, which accepts anything.
func inline(defs map[string]map[string]any, v any, active map[string]bool) (any, error) {
	switch t := v.(type) {
	case map[string]any:
		if ref, ok := t["$ref"].(string); ok {
			name := strings.TrimPrefix(ref, refPrefix)
			def, found := defs[name]
			if !found {
				return nil, fmt.Errorf("unresolved $ref %q", ref)
			}
			if name == quantity {
				return map[string]any{"oneOf": []any{
					map[string]any{"type": []any{"string", "null"}}, map[string]any{"type": "number"},
				}}, nil
			}
			if active[name] {
				return map[string]any{}, nil
			}
			active[name] = true
			defer delete(active, name)
			return inline(defs, def, active)
		}
		out := make(map[string]any, len(t)+1)
		for k, val := range t {
			if k == "x-kubernetes-group-version-kind" || k == "description" {
				continue
			}
			if k == "properties" {
				props := map[string]any{}
				for pk, pv := range val.(map[string]any) {
					c, err := inline(defs, pv, active)
					if err != nil {
						return nil, fmt.Errorf("%s: %w", pk, err)
					}
					props[pk] = c
				}
				out[k] = props
				continue
			}
			c, err := inline(defs, val, active)
			if err != nil {
				return nil, err
			}
			out[k] = c
		}
		return strictNullable(out), nil
	case []any:
		out := make([]any, len(t))
		for i, e := range t {
			c, err := inline(defs, e, active)
			if err != nil {
				return nil, err
			}
			out[i] = c
		}
		return out, nil
	default:
		return v, nil
	}
}

// strictNullable forbids undeclared properties on objects that declare some, lets an integer or a
// string stand where the API accepts either (IntOrString, and Quantity, which YAML often writes as
// a number), and lets every typed value be null, as an omitted field is in rendered manifests.
func strictNullable(s map[string]any) map[string]any {
	if _, ok := s["properties"]; ok {
		if _, set := s["additionalProperties"]; !set {
			s["additionalProperties"] = false
		}
	}
	if s["format"] == "int-or-string" {
		delete(s, "format")
		delete(s, "type")
		s["oneOf"] = []any{map[string]any{"type": []any{"string", "null"}}, map[string]any{"type": "integer"}}
		return s
	}
	if typ, ok := s["type"].(string); ok {
		s["type"] = []any{typ, "null"}
	}
	return s
}
