package node

import (
	"bytes"
	"testing"
	"time"

	"x0tta6bl4/internal/identity"
	"x0tta6bl4/internal/meshca"
)

func beaconCert(tb testing.TB) *meshca.Certificate {
	_, _, c := testNodeCert(tb, "beacon.test", time.Now())
	return c
}

// testNodeCert returns a new root CA of domain, a node key and the certificate it issued the node
// at now, valid for an hour.
func testNodeCert(tb testing.TB, domain string, now time.Time) (*meshca.CA, *identity.NodeKey, *meshca.Certificate) {
	tb.Helper()
	k, err := identity.GenerateSigningKey()
	if err != nil {
		tb.Fatal(err)
	}
	ca, err := meshca.NewRootCA(k, meshca.CAOptions{TrustDomain: domain, Name: "root", Duration: 2 * time.Hour}, now)
	if err != nil {
		tb.Fatal(err)
	}
	nk, err := identity.GenerateNodeKey()
	if err != nil {
		tb.Fatal(err)
	}
	c, err := ca.Issue(meshca.IssueRequest{Name: "n", PublicKey: nk.Public(), Duration: time.Hour}, now)
	if err != nil {
		tb.Fatal(err)
	}
	return ca, nk, c
}

func TestBeaconRoundTrip(t *testing.T) {
	c := beaconCert(t)
	b := encodeBeacon(7946, c)
	port, got, err := parseBeacon(b)
	if err != nil || port != 7946 || !bytes.Equal(got.Bytes(), c.Bytes()) {
		t.Fatalf("round trip: %d %v", port, err)
	}
	bad := [][]byte{
		b[:beaconHeader-1],
		append([]byte("X6DC"), b[4:]...),
		append(append([]byte{}, b[:4]...), append([]byte{2}, b[5:]...)...),
		append(append([]byte{}, b[:6]...), append([]byte{0, 0}, b[8:]...)...), // port 0
		b[:len(b)-1], // truncated certificate
		append(bytes.Clone(b), 0),
	}
	for i, x := range bad {
		if _, _, err := parseBeacon(x); err == nil {
			t.Errorf("bad beacon %d accepted", i)
		}
	}
}

func FuzzParseBeacon(f *testing.F) {
	f.Add(encodeBeacon(7946, beaconCert(f)))
	f.Add([]byte("X6DB\x01\x00\x1f\x0a"))
	f.Fuzz(func(t *testing.T, b []byte) {
		port, c, err := parseBeacon(b)
		if err != nil {
			return
		}
		if port == 0 || !bytes.Equal(encodeBeacon(port, c), b) {
			t.Fatal("accepted beacon does not re-encode to its input")
		}
	})
}

// TestBeaconCertificateOutlivesBuffer: the discovery loop parses each beacon in its one receive
// buffer and keeps the certificate of a node it heard until it dials it; the next beacon must not
// change that certificate.
func TestBeaconCertificateOutlivesBuffer(t *testing.T) {
	c := beaconCert(t)
	buf := encodeBeacon(7946, c)
	_, got, err := parseBeacon(buf)
	if err != nil {
		t.Fatal(err)
	}
	for i := range buf {
		buf[i] = 0xa5
	}
	if !bytes.Equal(got.Bytes(), c.Bytes()) || !bytes.Equal(got.Signature, c.Signature) {
		t.Fatal("the beacon's certificate changed with the receive buffer")
	}
}
