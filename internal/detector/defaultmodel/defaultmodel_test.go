package defaultmodel

import (
	"testing"

	"x0tta6bl4/internal/detector"
)

// TestLoad: the shipped model decodes and matches this build's features.
func TestLoad(t *testing.T) {
	m, err := Load()
	if err != nil {
		t.Fatal(err)
	}
	if th := m.DetectionThreshold(); th <= 0 || th >= 1 {
		t.Fatalf("threshold %v", th)
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
	want := m.Version()
	if e, ok := m.(*detector.Ensemble); ok {
		want = e.Members[0].Version()
	}
	if b.Version() != want {
		t.Fatalf("base %s of shipped %s", b.Version(), m.Version())
	}
}
