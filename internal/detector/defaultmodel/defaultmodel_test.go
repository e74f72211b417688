package defaultmodel

import "testing"

// TestLoad: the shipped model decodes and matches this build's features.
func TestLoad(t *testing.T) {
	m, err := Load()
	if err != nil {
		t.Fatal(err)
	}
	if m.Threshold <= 0 || m.Threshold >= 1 {
		t.Fatalf("threshold %v", m.Threshold)
	}
}

// TestBase: training starts from a single model, the shipped one or its first member.
func TestBase(t *testing.T) {
	m, err := Load()
	if err != nil {
		t.Fatal(err)
	}
	b, err := Base()
	if err != nil {
		t.Fatal(err)
	}
	if b.IsEnsemble() || (m.IsEnsemble() && b.Version() != m.Members[0].Version()) || (!m.IsEnsemble() && b.Version() != m.Version()) {
		t.Fatalf("base %s of shipped %s", b.Version(), m.Version())
	}
}
