package api

import (
	"encoding/base64"
	"encoding/json"
	"strings"
	"testing"

	"x0tta6bl4/internal/meshca"
	"x0tta6bl4/internal/routing"
)

func TestMeshRecordsBounds(t *testing.T) {
	one := EncodeSignedRecord("alpha", make([]byte, 7000), make([]byte, 3400))
	ok := MeshRecords{Generation: 3, Records: []SignedRecord{one}}
	if err := ok.Validate(); err != nil {
		t.Fatalf("one record: %v", err)
	}
	many := MeshRecords{Records: make([]SignedRecord, MaxRecordsPerAnswer+1)}
	for i := range many.Records {
		many.Records[i] = one
	}
	if err := many.Validate(); err == nil {
		t.Fatal("257 records accepted")
	}
	big := EncodeSignedRecord("alpha", make([]byte, meshca.MaxCertificateSize), make([]byte, routing.MaxRecordSize))
	heavy := MeshRecords{Records: make([]SignedRecord, 200)}
	for i := range heavy.Records {
		heavy.Records[i] = big
	}
	if err := heavy.Validate(); err == nil || !strings.Contains(err.Error(), "bytes of records") {
		t.Fatalf("6 MB of records: %v", err)
	}
	for name, r := range map[string]SignedRecord{
		"certificate too long": EncodeSignedRecord("alpha", make([]byte, meshca.MaxCertificateSize+1), []byte{1}),
		"record too long":      EncodeSignedRecord("alpha", []byte{1}, make([]byte, routing.MaxRecordSize+1)),
		"bad name":             EncodeSignedRecord("Alpha Beta", []byte{1}, []byte{1}),
	} {
		if err := (&MeshRecords{Records: []SignedRecord{r}}).Validate(); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
	for name, r := range map[string]SignedRecord{
		"not base64":        {Certificate: "!!!!", Record: "AAAA"},
		"empty certificate": {Certificate: "", Record: "AAAA"},
		"record too long":   EncodeSignedRecord("", []byte{1}, make([]byte, routing.MaxRecordSize+1)),
	} {
		if _, _, err := r.Decode(); err == nil {
			t.Errorf("decode %s: accepted", name)
		}
	}
	c, rec, err := one.Decode()
	if err != nil || len(c) != 7000 || len(rec) != 3400 {
		t.Fatalf("decode: %d %d %v", len(c), len(rec), err)
	}
}

// FuzzMeshRecords feeds arbitrary answers to what a node does with GET /api/v1/mesh/records: decode,
// check the bounds, decode each record. Nothing it accepts may exceed the bounds.
func FuzzMeshRecords(f *testing.F) {
	f.Add([]byte(`{"generation":1,"more":false,"records":[{"node":"a","certificate":"AAAA","record":"AAAA"}]}`))
	f.Add([]byte(`{"records":[{"node":"a","certificate":"` + base64.StdEncoding.EncodeToString(make([]byte, 100)) + `","record":"=="}]}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		var m MeshRecords
		if json.Unmarshal(b, &m) != nil || m.Validate() != nil {
			return
		}
		total := 0
		for i := range m.Records {
			c, r, err := m.Records[i].Decode()
			if err != nil {
				continue
			}
			if len(c) > meshca.MaxCertificateSize || len(r) > routing.MaxRecordSize || len(c) == 0 || len(r) == 0 {
				t.Fatalf("decoded %d and %d bytes", len(c), len(r))
			}
			total += len(c) + len(r)
		}
		if len(m.Records) > MaxRecordsPerAnswer || total > MaxRecordsAnswerBytes {
			t.Fatalf("%d records of %d bytes accepted", len(m.Records), total)
		}
	})
}
