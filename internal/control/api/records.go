package api

import (
	"encoding/base64"
	"errors"
	"fmt"

	"x0tta6bl4/internal/identity"
	"x0tta6bl4/internal/meshca"
	"x0tta6bl4/internal/routing"
)

// Limits of an answer carrying signed records (GET /api/v1/mesh/records, the enrolment answer). A
// record with its certificate is about 10 KB, and at most routing.MaxRecordSize +
// meshca.MaxCertificateSize (about 31 KB); a page ends at whichever limit it reaches first, so an
// answer stays below 6 MB of JSON, under a client's 8 MiB bound on any answer.
const (
	MaxRecordsPerAnswer   = 256
	MaxRecordsAnswerBytes = 4 << 20 // decoded certificate and record bytes of one answer
)

// What the control plane did with the record a report carried (ReportAccepted.Record).
const (
	RecordPublished      = "published"       // stored and handed out to the nodes that may reach the reporter
	RecordStored         = "stored"          // stored; handed out to nodes that ask for everything (not news: docs/control.md)
	RecordStale          = "stale"           // not newer than the stored record: ignored
	RecordOldCertificate = "old_certificate" // signed under an earlier certificate of the node: ignored
	RecordExpired        = "expired"         // already expired: ignored
)

// SignedRecord is a node's signed link-state record (docs/routing.md, "Record") with the mesh
// certificate that verifies it, both base64 (standard, padded) of their binary encodings.
type SignedRecord struct {
	// Node is the originator's name in the control plane's answers; a report leaves it out (the
	// record is the reporter's).
	Node        string `json:"node,omitempty"`
	Certificate string `json:"certificate"`
	Record      string `json:"record"`
}

// EncodeSignedRecord returns the JSON form of a certificate and a record of the named node (empty
// in a report).
func EncodeSignedRecord(node string, cert, record []byte) SignedRecord {
	return SignedRecord{Node: node, Certificate: base64.StdEncoding.EncodeToString(cert), Record: base64.StdEncoding.EncodeToString(record)}
}

// Decode returns the certificate and the record, checking their sizes before decoding anything.
// It does not parse or verify them.
func (r *SignedRecord) Decode() (cert, record []byte, err error) {
	if cert, err = decodeBounded(r.Certificate, 1, meshca.MaxCertificateSize); err != nil {
		return nil, nil, fmt.Errorf("certificate: %w", err)
	}
	if record, err = decodeBounded(r.Record, 1, routing.MaxRecordSize); err != nil {
		return nil, nil, fmt.Errorf("record: %w", err)
	}
	return cert, record, nil
}

func decodeBounded(s string, lo, hi int) ([]byte, error) {
	if len(s) > base64.StdEncoding.EncodedLen(hi) {
		return nil, fmt.Errorf("longer than %d bytes", hi)
	}
	b, err := base64.StdEncoding.DecodeString(s)
	if err != nil {
		return nil, errors.New("not base64")
	}
	if len(b) < lo || len(b) > hi {
		return nil, fmt.Errorf("%d bytes, want %d to %d", len(b), lo, hi)
	}
	return b, nil
}

// MeshRecords is GET /api/v1/mesh/records, and part of the enrolment answer: the latest signed
// records of the nodes the caller may reach. The node verifies each one itself, as it verifies a
// flooded record, so a control plane can neither forge a record nor roll one back.
type MeshRecords struct {
	// Generation is what to pass as ?after= next: the answer then holds only records published
	// since (or waits for one).
	Generation uint64 `json:"generation"`
	// More says the answer was cut at a page limit: ask again at once with after=Generation.
	More    bool           `json:"more"`
	Records []SignedRecord `json:"records"`
}

// Validate checks an answer's bounds: the number of records, their names and sizes (as their
// base64 says; Decode checks the encoding).
func (m *MeshRecords) Validate() error {
	if len(m.Records) > MaxRecordsPerAnswer {
		return fmt.Errorf("%d records, at most %d", len(m.Records), MaxRecordsPerAnswer)
	}
	total := 0
	for i := range m.Records {
		r := &m.Records[i]
		if err := identity.ValidateNodeName(r.Node); err != nil {
			return fmt.Errorf("records[%d].node: %w", i, err)
		}
		c, rec := decodedLen(r.Certificate), decodedLen(r.Record)
		if c < 1 || c > meshca.MaxCertificateSize || rec < 1 || rec > routing.MaxRecordSize {
			return fmt.Errorf("records[%d]: a certificate of %d bytes and a record of %d, want 1 to %d and 1 to %d",
				i, c, rec, meshca.MaxCertificateSize, routing.MaxRecordSize)
		}
		total += c + rec
	}
	if total > MaxRecordsAnswerBytes {
		return fmt.Errorf("%d bytes of records, at most %d", total, MaxRecordsAnswerBytes)
	}
	return nil
}

// decodedLen is the length of what padded base64 s decodes to, or -1 when no string of its length
// is padded base64.
func decodedLen(s string) int {
	if len(s)%4 != 0 {
		return -1
	}
	n := len(s) / 4 * 3
	for i := 0; i < 2 && len(s) > i && s[len(s)-1-i] == '='; i++ {
		n--
	}
	return n
}

// Enrolment is the answer to POST /api/v1/enroll: the new node's bundle, and the signed records of
// the nodes it may reach, so that a node started with only a join token can dial at once.
type Enrolment struct {
	Bundle
	Records MeshRecords `json:"records"`
}
