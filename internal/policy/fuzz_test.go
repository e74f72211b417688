package policy

import (
	"testing"

	"x0tta6bl4/internal/meshca"
)

// FuzzCompileSource: any bytes given as a policy source either fail with an error or compile to
// grants within meshca's per-grant bounds whose source form compiles to the same grants.
func FuzzCompileSource(f *testing.F) {
	f.Add([]byte(exampleYAML))
	f.Add([]byte(exampleJSON))
	f.Add([]byte("grants: [{src: ['*'], dst: ['group:x'], ports: ['udp:1-65535', 'tcp:*']}]"))
	f.Add([]byte("grants: []\ntests: [{src: {name: a}, dst: {name: b}, deny: [icmp]}]"))
	f.Fuzz(func(t *testing.T, data []byte) {
		s, err := ParseSource(data)
		if err != nil {
			return
		}
		grants, err := s.Compile(td)
		if err != nil {
			return
		}
		for i, g := range grants {
			if len(g.Src) == 0 || len(g.Src) > meshca.MaxGrantSelectors || len(g.Dst) == 0 || len(g.Dst) > meshca.MaxGrantSelectors ||
				len(g.Ports) == 0 || len(g.Ports) > meshca.MaxGrantPorts {
				t.Fatalf("grant %d out of bounds: %+v", i, g)
			}
		}
		back := FromPolicy(&meshca.Policy{Grants: grants})
		again, err := back.Compile(td)
		if err != nil {
			t.Fatalf("the source form of compiled grants does not compile: %v\n%+v", err, back)
		}
		for i := range grants {
			if len(again[i].Src) != len(grants[i].Src) || len(again[i].Ports) != len(grants[i].Ports) {
				t.Fatalf("grant %d changed through the source form: %+v → %+v", i, grants[i], again[i])
			}
			for j := range grants[i].Ports {
				if again[i].Ports[j] != grants[i].Ports[j] {
					t.Fatalf("grant %d port %d: %v → %v", i, j, grants[i].Ports[j], again[i].Ports[j])
				}
			}
		}
	})
}
