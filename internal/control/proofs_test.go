package control

import (
	"testing"
	"time"

	"x0tta6bl4/internal/control/api"
	"x0tta6bl4/internal/control/store"
	"x0tta6bl4/internal/routing"
)

// signProof signs n's destination proof: its level-2 record of area, naming gateway gw.
func signProof(t testing.TB, n *testNode, area uint32, seq uint64, expires time.Time, gw *testNode) ([]byte, []byte) {
	t.Helper()
	cert := n.bundle.Certificate
	rec := &routing.Record{Origin: n.key.Sign.PublicKey().ID(), Seq: seq, Expires: expires, CertFingerprint: cert.Fingerprint(),
		Incarnation: 7, Level2: true, Area: area,
		Links: []routing.LinkInfo{{Neighbour: gw.key.Sign.PublicKey().ID(), Cost: 30}}}
	raw, err := routing.SignRecord(n.key.Sign, rec)
	if err != nil {
		t.Fatal(err)
	}
	return cert.Bytes(), raw
}

func report(cert, raw []byte) *api.SignedRecord {
	sr := api.EncodeSignedRecord("", cert, raw)
	return &sr
}

// TestProofsHandedToOtherAreas: a reported destination proof is checked as a node checks one, kept
// apart from records, and handed to the nodes of other areas only; a record is refused as a proof
// and a proof as a record.
func TestProofsHandedToOtherAreas(t *testing.T) {
	srv, an, alpha := recordServer(t, nil)
	bn, bravo := enrolTestNode(t, srv, "bravo")
	cn, charlie := enrolTestNode(t, srv, "charlie")
	ctx := t.Context()
	exp := time.Now().Add(3 * time.Minute)

	// Each node reports its level-1 record of its area (what tells the control plane its area).
	for _, c := range []struct {
		n    *testNode
		area uint32
	}{{alpha, 1}, {bravo, 2}, {charlie, 1}} {
		cert := c.n.bundle.Certificate
		raw, err := routing.SignRecord(c.n.key.Sign, &routing.Record{Origin: c.n.key.Sign.PublicKey().ID(), Seq: 1, Expires: exp,
			CertFingerprint: cert.Fingerprint(), Area: c.area})
		if err != nil {
			t.Fatal(err)
		}
		node, err := srv.st.NodeByName(ctx, c.n.name)
		if err != nil {
			t.Fatal(err)
		}
		if out, err := srv.acceptSigned(ctx, node, &srv.records, report(cert.Bytes(), raw)); err != nil || out != api.RecordPublished {
			t.Fatalf("%s's record: %q %v", c.n.name, out, err)
		}
	}

	// Wrong kinds are refused as bad input.
	rc, rr := signRecord(t, alpha, nil, 5, exp, "")
	if _, err := srv.acceptSigned(ctx, an, &srv.proofs, report(rc, rr)); err == nil {
		t.Fatal("a level-1 record accepted as a proof")
	}
	pc, pr := signProof(t, alpha, 1, 5, exp, charlie)
	if _, err := srv.acceptSigned(ctx, an, &srv.records, report(pc, pr)); err == nil {
		t.Fatal("a proof accepted as a link-state record")
	}
	if _, err := srv.acceptSigned(ctx, bn, &srv.proofs, report(pc, pr)); err == nil {
		t.Fatal("alpha's proof accepted from bravo")
	}
	bad := append([]byte(nil), pr...)
	bad[len(bad)-1] ^= 1
	if _, err := srv.acceptSigned(ctx, an, &srv.proofs, report(pc, bad)); err == nil {
		t.Fatal("a proof with a broken signature accepted")
	}

	// Good proofs: alpha's and charlie's (area 1), bravo's (area 2).
	for _, c := range []struct {
		n    *testNode
		area uint32
	}{{alpha, 1}, {bravo, 2}, {charlie, 1}} {
		node, _ := srv.st.NodeByName(ctx, c.n.name)
		gw := alpha
		if c.n == alpha {
			gw = charlie
		}
		cert, raw := signProof(t, c.n, c.area, 5, exp, gw)
		if out, err := srv.acceptSigned(ctx, node, &srv.proofs, report(cert, raw)); err != nil || out != api.RecordPublished {
			t.Fatalf("%s's proof: %q %v", c.n.name, out, err)
		}
		if out, err := srv.acceptSigned(ctx, node, &srv.proofs, report(cert, raw)); err != nil || out != api.RecordStale {
			t.Fatalf("%s's proof again: %q %v", c.n.name, out, err)
		}
	}
	// The proof signed again (a new sequence number, the same gateways) is stored, not published: not news.
	cert, raw := signProof(t, bravo, 2, 6, exp, alpha)
	if out, err := srv.acceptSigned(ctx, bn, &srv.proofs, report(cert, raw)); err != nil || out != api.RecordStored {
		t.Fatalf("bravo's refreshed proof: %q %v", out, err)
	}
	if g := srv.proofs.gen.current(); g != 3 {
		t.Fatalf("proof generation %d, want 3", g)
	}
	if g := srv.records.gen.current(); g != 3 {
		t.Fatalf("proofs moved the record generation: %d", g)
	}

	names := func(caller *store.Node) []string {
		t.Helper()
		m, err := srv.signedFor(ctx, &srv.proofs, caller, 0, nil)
		if err != nil {
			t.Fatal(err)
		}
		var out []string
		for _, r := range m.Records {
			out = append(out, r.Node)
		}
		return out
	}
	if got := names(an); len(got) != 1 || got[0] != "bravo" {
		t.Errorf("alpha (area 1) got the proofs of %v, want bravo's only", got)
	}
	if got := names(cn); len(got) != 1 || got[0] != "bravo" {
		t.Errorf("charlie (area 1) got the proofs of %v, want bravo's only", got)
	}
	if got := names(bn); len(got) != 2 {
		t.Errorf("bravo (area 2) got the proofs of %v, want alpha's and charlie's", got)
	}
}

// FuzzReportedProof: FuzzReportedRecord for destination proofs.
func FuzzReportedProof(f *testing.F) {
	srv, n, alpha := recordServer(f, nil)
	_, bravo := enrolTestNode(f, srv, "bravo")
	validCert, validProof := signProof(f, alpha, 4, 100, time.Now().Add(time.Hour), bravo)
	f.Add([]byte{}, uint16(0), uint16(0xffff), []byte{}, uint16(0), uint16(0xffff))                  // the valid pair
	f.Add([]byte{}, uint16(0), uint16(0xffff), []byte{0xff}, uint16(40), uint16(0xffff))             // a higher sequence number
	f.Add([]byte{}, uint16(0), uint16(0xffff), []byte{1}, uint16(len(validProof)-1), uint16(0xffff)) // the signature
	f.Add([]byte{}, uint16(0), uint16(0xffff), []byte{0}, uint16(1), uint16(0xffff))                 // the flags
	f.Add([]byte{7}, uint16(100), uint16(0xffff), []byte{}, uint16(0), uint16(0xffff))               // the certificate
	fuzzReported(f, srv, n, &srv.proofs, validCert, validProof)
}
