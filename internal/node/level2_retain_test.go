package node

import (
	"bytes"
	"testing"
	"time"

	"x0tta6bl4/internal/meshca"
	"x0tta6bl4/internal/routing"
)

// TestCheckedProofOutlivesBuffer: a gateway keeps the certificate and record of a pushed destination
// proof (checkProof) and checks both again whenever level 2 changes; the push arrived in the socket
// reader's buffer, which the next datagram overwrites. After overwriting the buffers the proof was
// checked in, both must still verify, with a verifier that has not cached the certificate either.
func TestCheckedProofOutlivesBuffer(t *testing.T) {
	now := time.Now()
	ca, nk, cert := testNodeCert(t, "proof.test", now)
	rec := &routing.Record{Origin: cert.SignPublicKey.ID(), Seq: 1, Expires: now.Add(time.Hour),
		CertFingerprint: cert.Fingerprint(), Area: 2, Level2: true}
	raw, err := routing.SignRecord(nk.Sign, rec)
	if err != nil {
		t.Fatal(err)
	}
	v, err := meshca.NewVerifier(ca.Certificate())
	if err != nil {
		t.Fatal(err)
	}
	certBuf, recBuf := bytes.Clone(cert.Bytes()), bytes.Clone(raw)
	gotCert, gotRec, err := checkProof(v, now, certBuf, recBuf)
	if err != nil {
		t.Fatal(err)
	}
	for _, b := range [][]byte{certBuf, recBuf} {
		for i := range b {
			b[i] = 0xa5
		}
	}
	fresh, err := meshca.NewVerifier(ca.Certificate())
	if err != nil {
		t.Fatal(err)
	}
	if err := fresh.Verify(gotCert, now); err != nil {
		t.Fatalf("the proof's certificate after the receive buffer was overwritten: %v", err)
	}
	if err := gotRec.VerifySignature(gotCert); err != nil {
		t.Fatalf("the proof after the receive buffer was overwritten: %v", err)
	}
}
