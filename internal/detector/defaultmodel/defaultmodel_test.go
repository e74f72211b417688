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
