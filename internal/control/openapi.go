package control

import (
	"encoding/json"
	"fmt"
	"html"
	"net/http"
	"reflect"
	"slices"
	"strings"
	"time"

	"x0tta6bl4/internal/control/api"
)

// The OpenAPI document is generated from the route table and, by reflection, from the Go types the
// handlers encode and decode, so it cannot drift from what the server does.

var timeType = reflect.TypeFor[time.Time]()

// schemaGen turns Go types into JSON Schema 2020-12 (as OpenAPI 3.1 uses), collecting named
// struct types under components/schemas.
type schemaGen struct {
	components map[string]any
}

func (g *schemaGen) ref(t reflect.Type) map[string]any {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	switch {
	case t == timeType:
		return map[string]any{"type": "string", "format": "date-time"}
	case t.Kind() == reflect.Struct:
		name := t.Name()
		if _, done := g.components[name]; !done {
			g.components[name] = nil // placeholder against recursion
			g.components[name] = g.object(t)
		}
		return map[string]any{"$ref": "#/components/schemas/" + name}
	case t.Kind() == reflect.Slice:
		return map[string]any{"type": "array", "items": g.ref(t.Elem())}
	case t.Kind() == reflect.Map:
		return map[string]any{"type": "object", "additionalProperties": g.ref(t.Elem())}
	case t.Kind() == reflect.String:
		return map[string]any{"type": "string"}
	case t.Kind() == reflect.Bool:
		return map[string]any{"type": "boolean"}
	case t.Kind() >= reflect.Int && t.Kind() <= reflect.Int64:
		return map[string]any{"type": "integer", "format": "int64"}
	case t.Kind() >= reflect.Uint && t.Kind() <= reflect.Uint64:
		return map[string]any{"type": "integer", "minimum": 0}
	case t.Kind() == reflect.Float32 || t.Kind() == reflect.Float64:
		return map[string]any{"type": "number"}
	}
	panic("openapi: unsupported type " + t.String())
}

// object describes a struct by its JSON encoding: tagged names, embedded structs flattened,
// omitempty and pointer fields optional, the rest required. Unknown properties are refused, as the
// server's decoder does.
func (g *schemaGen) object(t reflect.Type) map[string]any {
	props := map[string]any{}
	var required []string
	var walk func(t reflect.Type)
	walk = func(t reflect.Type) {
		for i := range t.NumField() {
			f := t.Field(i)
			if f.Anonymous && f.Type.Kind() == reflect.Struct {
				walk(f.Type)
				continue
			}
			if !f.IsExported() {
				continue
			}
			name, opts, _ := strings.Cut(f.Tag.Get("json"), ",")
			if name == "-" {
				continue
			}
			if name == "" {
				name = f.Name
			}
			p := g.ref(f.Type)
			if f.Type.Kind() == reflect.Pointer {
				p = map[string]any{"oneOf": []any{p, map[string]any{"type": "null"}}}
			}
			props[name] = p
			if !strings.Contains(opts, "omitempty") && f.Type.Kind() != reflect.Pointer {
				required = append(required, name)
			}
		}
	}
	walk(t)
	slices.Sort(required)
	o := map[string]any{"type": "object", "properties": props, "additionalProperties": false}
	if len(required) > 0 {
		o["required"] = required
	}
	return o
}

func (s *Server) openAPI() map[string]any {
	g := &schemaGen{components: map[string]any{}}
	errResp := func(desc string) map[string]any {
		return map[string]any{"description": desc, "content": map[string]any{"application/json": map[string]any{"schema": map[string]any{"$ref": "#/components/schemas/Error"}}}}
	}
	g.ref(reflect.TypeFor[api.Error]())
	paths := map[string]any{}
	for _, rt := range s.routes {
		d := rt.doc
		op := map[string]any{"operationId": d.id, "summary": d.summary, "tags": []string{d.tag}}
		desc := d.desc
		if d.deprecated != "" {
			op["deprecated"] = true
			desc = "Deprecated: use " + d.deprecated + ". " + desc
		}
		if desc != "" {
			op["description"] = desc
		}
		var params []any
		for _, p := range d.params {
			params = append(params, map[string]any{"name": p.name, "in": "path", "required": true, "description": p.desc, "schema": map[string]any{"type": p.typ}})
		}
		for _, p := range d.query {
			params = append(params, map[string]any{"name": p.name, "in": "query", "required": false, "description": p.desc, "schema": map[string]any{"type": p.typ}})
		}
		if len(params) > 0 {
			op["parameters"] = params
		}
		resps := map[string]any{}
		ok := map[string]any{"description": http.StatusText(d.status)}
		switch {
		case d.resp != nil:
			ok["content"] = map[string]any{"application/json": map[string]any{"schema": g.ref(reflect.TypeOf(d.resp))}}
		case d.contentType != "":
			ok["content"] = map[string]any{d.contentType: map[string]any{"schema": map[string]any{"type": "string"}}}
		case d.status == 501:
			ok = errResp("not implemented yet")
		}
		resps[fmt.Sprint(d.status)] = ok
		if d.req != nil {
			op["requestBody"] = map[string]any{"required": true, "content": map[string]any{"application/json": map[string]any{"schema": g.ref(reflect.TypeOf(d.req))}}}
			resps["400"] = errResp("malformed JSON, unknown field, wrong type or invalid value")
			resps["413"] = errResp("request body too large")
			resps["415"] = errResp("Content-Type is not application/json")
		}
		switch rt.access {
		case accessUser:
			op["security"] = []any{map[string]any{"bearer": []string{}}, map[string]any{"apiKey": []string{}}}
			resps["401"] = errResp("missing, invalid, expired or revoked credentials")
			resps["403"] = errResp("the credential's role is below " + string(rt.role))
		case accessOptional:
			op["security"] = []any{map[string]any{}, map[string]any{"bearer": []string{}}, map[string]any{"apiKey": []string{}}}
			resps["401"] = errResp("invalid credentials, or registration needs an admin")
			resps["403"] = errResp("the caller may not create this account")
		case accessNode:
			op["security"] = []any{map[string]any{"nodeSVID": []string{}}}
			resps["401"] = errResp("no client X.509-SVID presented")
			resps["403"] = errResp("node revoked, unknown, or not its enrolled key")
		case accessNodeOrUser:
			op["security"] = []any{map[string]any{"nodeSVID": []string{}}, map[string]any{"bearer": []string{}}, map[string]any{"apiKey": []string{}}}
			resps["401"] = errResp("no client X.509-SVID and no valid credentials")
			resps["403"] = errResp("node revoked, or the credential's role is below " + string(rt.role))
		}
		if rt.authLimited && resps["401"] == nil {
			resps["401"] = errResp("invalid credentials or token")
		}
		for code, desc := range d.extra {
			if code == 304 {
				resps["304"] = map[string]any{"description": desc}
				continue
			}
			resps[fmt.Sprint(code)] = errResp(desc)
		}
		resps["429"] = map[string]any{"description": "rate limited; see Retry-After",
			"headers": map[string]any{"Retry-After": map[string]any{"schema": map[string]any{"type": "integer"}, "description": "seconds to wait"}},
			"content": map[string]any{"application/json": map[string]any{"schema": map[string]any{"$ref": "#/components/schemas/Error"}}}}
		resps["500"] = errResp("internal error")
		op["responses"] = resps
		for _, p := range append([]string{rt.path}, rt.aliases...) {
			o := op
			if p != rt.path {
				o = map[string]any{}
				for k, v := range op {
					o[k] = v
				}
				o["operationId"] = d.id + "Seed"
				o["description"] = "Seed API path, same as " + rt.path + ". " + desc
			}
			item, _ := paths[p].(map[string]any)
			if item == nil {
				item = map[string]any{}
				paths[p] = item
			}
			item[strings.ToLower(rt.method)] = o
		}
	}
	return map[string]any{
		"openapi":           "3.1.0",
		"jsonSchemaDialect": "https://json-schema.org/draft/2020-12/schema",
		"info": map[string]any{
			"title":   "x0tta6bl4 control plane",
			"version": s.version,
			"description": "Enrollment, revocation, users and API keys, mesh view and metrics for a x0tta6bl4 post-quantum mesh. " +
				"TLS 1.3 only, X25519MLKEM768 key exchange, ML-DSA-65 certificates from the mesh CA. See docs/control.md.",
		},
		"servers": []any{map[string]any{"url": "/"}},
		"paths":   paths,
		"components": map[string]any{
			"schemas": g.components,
			"securitySchemes": map[string]any{
				"bearer":   map[string]any{"type": "http", "scheme": "bearer", "description": "a session token (x6s_…) from /api/v1/users/login, or an API key (x6k_…)"},
				"apiKey":   map[string]any{"type": "apiKey", "in": "header", "name": "X-API-Key", "description": "an API key (x6k_…)"},
				"nodeSVID": map[string]any{"type": "mutualTLS", "description": "the node's X.509-SVID (spiffe://<trust-domain>/node/<name>) from enrollment"},
			},
		},
		"tags": []any{
			map[string]any{"name": "service"}, map[string]any{"name": "users"}, map[string]any{"name": "keys"},
			map[string]any{"name": "enrollment"}, map[string]any{"name": "nodes"}, map[string]any{"name": "mesh"},
			map[string]any{"name": "security"}, map[string]any{"name": "audit"}, map[string]any{"name": "governance"},
		},
	}
}

func (s *Server) handleOpenAPI(w http.ResponseWriter, r *http.Request, rc *reqCtx) {
	writeJSON(w, http.StatusOK, s.openAPI())
}

// handleDocs renders the route table as a self-contained HTML page (no scripts, no external
// resources), generated from the same data as /openapi.json.
func (s *Server) handleDocs(w http.ResponseWriter, r *http.Request, rc *reqCtx) {
	var b strings.Builder
	e := html.EscapeString
	b.WriteString(`<!doctype html><html lang="en"><head><meta charset="utf-8"><title>x0tta6bl4 control plane API</title>
<style>body{font:15px/1.5 system-ui,sans-serif;max-width:60em;margin:2em auto;padding:0 1em;color:#222}
code,pre{font:13px ui-monospace,monospace;background:#f4f4f4;padding:.1em .3em}pre{padding:.6em;overflow:auto}
h2{border-bottom:1px solid #ccc;margin-top:2em}.m{font-weight:bold;display:inline-block;min-width:4.5em}
.op{margin:1.2em 0;padding:.5em 1em;border-left:4px solid #47a}.who{color:#555;font-size:90%}</style></head><body>
<h1>x0tta6bl4 control plane API</h1>
<p>Version ` + e(s.version) + `. Machine-readable: <a href="/openapi.json">/openapi.json</a> (OpenAPI 3.1).
Authenticate with <code>Authorization: Bearer &lt;token&gt;</code> (a session token from <code>POST /api/v1/users/login</code> or an API key) or <code>X-API-Key</code>.
Nodes authenticate with their X.509-SVID over mutual TLS. The server speaks TLS 1.3 only, with the X25519MLKEM768 key exchange and an ML-DSA-65 certificate from the mesh CA.
Errors are JSON <code>{"error": code, "message": text}</code>; 429 answers carry <code>Retry-After</code>. Paths of the seed API are kept as aliases.</p>`)
	tag := ""
	for _, rt := range s.routes {
		d := rt.doc
		if d.tag != tag {
			tag = d.tag
			fmt.Fprintf(&b, "<h2>%s</h2>\n", e(tag))
		}
		who := "anyone"
		switch rt.access {
		case accessUser:
			who = "role " + string(rt.role) + " or above"
		case accessOptional:
			who = "admin (or anyone, if registration is open)"
		case accessNode:
			who = "a node, by mutual TLS with its X.509-SVID"
		case accessNodeOrUser:
			who = "a node, by mutual TLS with its X.509-SVID, or role " + string(rt.role) + " or above"
		}
		fmt.Fprintf(&b, `<div class="op" id="%s"><div><span class="m">%s</span> <code>%s</code>`, e(d.id), e(rt.method), e(rt.path))
		for _, a := range rt.aliases {
			fmt.Fprintf(&b, ` · alias <code>%s</code>`, e(a))
		}
		fmt.Fprintf(&b, "</div><div>%s</div><div class=\"who\">Who: %s. Success: %d.</div>", e(d.summary), e(who), d.status)
		if d.deprecated != "" {
			fmt.Fprintf(&b, "<p><strong>Deprecated:</strong> use <code>%s</code>.</p>", e(d.deprecated))
		}
		if d.desc != "" {
			fmt.Fprintf(&b, "<p>%s</p>", e(d.desc))
		}
		for _, p := range append(d.params, d.query...) {
			fmt.Fprintf(&b, "<div>Parameter <code>%s</code> (%s): %s</div>", e(p.name), e(p.typ), e(p.desc))
		}
		if d.req != nil {
			ex, _ := json.MarshalIndent(d.req, "", "  ")
			fmt.Fprintf(&b, "<div>Request body (<code>%s</code>):</div><pre>%s</pre>", e(reflect.TypeOf(d.req).Name()), e(string(ex)))
		}
		if d.resp != nil {
			fmt.Fprintf(&b, "<div>Response: <code>%s</code> (schema in /openapi.json)</div>", e(reflect.TypeOf(d.resp).Name()))
		}
		b.WriteString("</div>\n")
	}
	b.WriteString("</body></html>\n")
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Content-Security-Policy", "default-src 'none'; style-src 'unsafe-inline'")
	w.WriteHeader(http.StatusOK)
	w.Write([]byte(b.String()))
}
