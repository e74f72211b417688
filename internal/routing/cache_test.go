package routing

import (
	"testing"
	"time"
)

// TestCacheKeepsFewRecordsPerOrigin: an originator's refreshes leave at most perOrigin of its records
// in the cache, the newest among them, with the buffers registered for them; a superseded record that
// comes back is verified again.
func TestCacheKeepsFewRecordsPerOrigin(t *testing.T) {
	f := getFixture(t)
	c := NewCache(0)
	const versions = 40
	var raws [][]byte
	for seq := range uint64(versions) {
		rec := &Record{Origin: f.ids[0], Seq: seq + 1, Expires: f.now.Add(time.Minute),
			CertFingerprint: f.certs[0].Fingerprint(), Links: testLinks(f, 1)}
		raw, err := SignRecord(f.keys[0].Sign, rec)
		if err != nil {
			t.Fatal(err)
		}
		got, err := c.verify(raw, f.certs[0])
		if err != nil || got.Seq != seq+1 {
			t.Fatalf("verify seq %d: %v", seq+1, err)
		}
		got.message(false) // registers the messages' buffers, as flooding it does
		got.message(true)
		raws = append(raws, raw)
	}
	c.mu.Lock()
	records, held, bufs := len(c.records), len(c.origins[f.ids[0]]), len(c.bufs)
	c.mu.Unlock()
	if records != perOrigin || held != perOrigin || bufs > 3*perOrigin {
		t.Errorf("after %d versions: %d records, %d held for the originator, %d buffers; want %d, %d, at most %d",
			versions, records, held, bufs, perOrigin, perOrigin, 3*perOrigin)
	}
	before := c.Verifications()
	if got, err := c.verify(raws[versions-1], f.certs[0]); err != nil || got.Seq != versions {
		t.Fatalf("newest record: %v", err)
	}
	if c.Verifications() != before {
		t.Error("the newest record was verified again")
	}
	if _, err := c.verify(raws[0], f.certs[0]); err != nil {
		t.Fatal(err)
	}
	if c.Verifications() != before+1 {
		t.Error("a superseded record was still cached")
	}
}
