package session

import (
	"bytes"
	"errors"
	"testing"
)

func TestUnknownSessionNotice(t *testing.T) {
	h := DataHeader{Receiver: 0xdeadbeef, Counter: 12345}
	b := AppendUnknownSession(nil, h)
	if len(b) != NoticeSize || b[0] != TypeUnknownSession {
		t.Fatalf("notice % x", b)
	}
	got, err := ParseUnknownSession(b)
	if err != nil || got != h {
		t.Fatalf("parse: %+v, %v", got, err)
	}
	for name, bad := range map[string][]byte{
		"short":    b[:NoticeSize-1],
		"long":     append(bytes.Clone(b), 0),
		"type":     append([]byte{TypeData}, b[1:]...),
		"reserved": append([]byte{TypeUnknownSession, 0, 1, 0}, b[4:]...),
		"counter":  AppendUnknownSession(nil, DataHeader{Counter: RejectAfterMessages}),
	} {
		if _, err := ParseUnknownSession(bad); !errors.Is(err, ErrMalformed) {
			t.Errorf("%s: err %v, want ErrMalformed", name, err)
		}
	}
}

// SentUnder accepts exactly the (receiver, counter) pairs the current keypair has sealed.
func TestSentUnder(t *testing.T) {
	a, b := newPair(t, t0)
	if a.SentUnder(DataHeader{}) {
		t.Fatal("nothing sealed yet, but SentUnder holds")
	}
	var hs []DataHeader
	for range 3 {
		p, err := a.Seal(nil, []byte("x"), t0)
		if err != nil {
			t.Fatal(err)
		}
		h, err := ParseDataHeader(p)
		if err != nil {
			t.Fatal(err)
		}
		hs = append(hs, h)
	}
	for _, h := range hs {
		if !a.SentUnder(h) {
			t.Fatalf("sealed %+v, SentUnder says no", h)
		}
		if b.SentUnder(h) {
			t.Fatalf("the other side claims %+v", h)
		}
	}
	if a.SentUnder(DataHeader{Receiver: hs[0].Receiver, Counter: hs[2].Counter + 1}) {
		t.Fatal("a counter not used yet passes")
	}
	if a.SentUnder(DataHeader{Receiver: hs[0].Receiver + 1, Counter: 0}) {
		t.Fatal("another receiver index passes")
	}
}

func FuzzParseUnknownSession(f *testing.F) {
	f.Add(AppendUnknownSession(nil, DataHeader{Receiver: 7, Counter: 9}))
	f.Add([]byte{TypeUnknownSession})
	f.Fuzz(func(t *testing.T, b []byte) {
		h, err := ParseUnknownSession(b)
		if err != nil {
			if !errors.Is(err, ErrMalformed) {
				t.Fatalf("error %v does not wrap ErrMalformed", err)
			}
			return
		}
		if !bytes.Equal(AppendUnknownSession(nil, h), b) {
			t.Fatalf("round trip: % x", b)
		}
	})
}
