package routing

import (
	"math/rand/v2"
	"testing"
)

// TestLSATable checks the LSDB's hash table against a map through random inserts, replacements and
// deletions (deletion shifts entries back, the delicate part).
func TestLSATable(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	var tab lsaTable
	ref := map[NodeID]*lsa{}
	ids := make([]NodeID, 300)
	for i := range ids {
		for j := range ids[i] {
			ids[i][j] = byte(rng.IntN(256))
		}
		if i%3 == 0 { // share a prefix with another ID
			ids[i] = ids[i/2]
			ids[i][31] ^= 0x55
		}
	}
	for step := range 20000 {
		id := ids[rng.IntN(len(ids))]
		switch rng.IntN(3) {
		case 0, 1:
			l := &lsa{origin: id}
			tab.set(l)
			ref[id] = l
		case 2:
			tab.del(id)
			delete(ref, id)
		}
		if tab.len() != len(ref) {
			t.Fatalf("step %d: %d entries, want %d", step, tab.len(), len(ref))
		}
		if step%97 == 0 {
			for _, id := range ids {
				if got := tab.get(id); got != ref[id] {
					t.Fatalf("step %d: wrong entry for %x", step, id[:4])
				}
			}
		}
	}
}
