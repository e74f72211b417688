package detector

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"strings"
)

// Model file format, version 2 (docs/intelligence.md). All integers big-endian; every number is an
// IEEE-754 float64. Nothing in it is executable: the decoder reads counts, checks them against fixed
// bounds, reads exactly that many numbers and checks the trailing SHA-256.
//
//	magic    "X6GS" (4 bytes)
//	version  u8 = 2
//	flags    u8 = 0
//	F E H1 H2 K  u16 each: node features, edge features, hidden sizes, classes
//	             (1 ≤ F,H1,H2 ≤ 1024; 0 ≤ E ≤ 1024; 2 ≤ K ≤ 64)
//	threshold  f64, in [0, 1]
//	mean F×f64, std F×f64 (std > 0), edge mean 2E×f64, edge std 2E×f64 (std > 0)
//	W1 H1×(2F+2E), B1 H1, W2 H2×2H1, B2 H2, Wo K×H2, Bo K  (row-major, finite)
//	sha256   32 bytes over everything before it
//
// Version 3 is a deep ensemble: a container of version-2 files, each with its own checksum.
//
//	magic    "X6GS" (4 bytes)
//	version  u8 = 3
//	flags    u8 = 0
//	n        u8: members, 2–MaxMembers
//	threshold  f64, in [0, 1]: the ensemble's own
//	n × (length u32, a version-2 file of that length); all with the same F, E and K
//	sha256   32 bytes over everything before it
//
// A single model is always written as version 2, so its encoding and version do not depend on
// this build knowing ensembles. Version 1 (no edge features, before the edge telemetry) is refused
// with a clear error: its node features are not the current ones.
const (
	fileMagic       = "X6GS"
	fileVersion     = 2
	ensembleVersion = 3
	ensembleHeader  = 4 + 1 + 1 + 1 + 8
	maxDim          = 1024
	maxClasses      = 64
	headerLen       = 4 + 1 + 1 + 5*2 + 8
	// MaxFileSize bounds what Load reads.
	MaxFileSize = 64 << 20
)

// ErrMalformed is returned (wrapped) for any model file that is not a valid version-2 or version-3
// file.
var ErrMalformed = errors.New("detector: malformed model file")

func malformed(format string, a ...any) error {
	return fmt.Errorf("%w: %s", ErrMalformed, fmt.Sprintf(format, a...))
}

// MarshalBinary encodes the model as a version-2 file.
func (m *Model) MarshalBinary() ([]byte, error) {
	if err := m.check(); err != nil {
		return nil, err
	}
	var b bytes.Buffer
	b.WriteString(fileMagic)
	b.WriteByte(fileVersion)
	b.WriteByte(0)
	for _, d := range []int{m.F, m.E, m.H1, m.H2, m.K} {
		binary.Write(&b, binary.BigEndian, uint16(d))
	}
	binary.Write(&b, binary.BigEndian, math.Float64bits(m.Threshold))
	for _, t := range m.tensors() {
		for _, v := range t {
			binary.Write(&b, binary.BigEndian, math.Float64bits(v))
		}
	}
	sum := sha256.Sum256(b.Bytes())
	b.Write(sum[:])
	return b.Bytes(), nil
}

// MarshalBinary encodes the ensemble as a version-3 file.
func (e *Ensemble) MarshalBinary() ([]byte, error) {
	if err := e.check(); err != nil {
		return nil, err
	}
	var b bytes.Buffer
	b.WriteString(fileMagic)
	b.WriteByte(ensembleVersion)
	b.WriteByte(0)
	b.WriteByte(byte(len(e.Members)))
	binary.Write(&b, binary.BigEndian, math.Float64bits(e.Threshold))
	for _, mb := range e.Members {
		eb, err := mb.MarshalBinary()
		if err != nil {
			return nil, err
		}
		binary.Write(&b, binary.BigEndian, uint32(len(eb)))
		b.Write(eb)
	}
	sum := sha256.Sum256(b.Bytes())
	b.Write(sum[:])
	return b.Bytes(), nil
}

func (m *Model) tensors() [][]float64 {
	return [][]float64{m.Mean, m.Std, m.EMean, m.EStd, m.W1, m.B1, m.W2, m.B2, m.Wo, m.Bo}
}

func (m *Model) sizes() []int {
	return []int{m.F, m.F, 2 * m.E, 2 * m.E, m.H1 * m.InputWidth(), m.H1, m.H2 * 2 * m.H1, m.H2, m.K * m.H2, m.K}
}

func (m *Model) dimsOK() error {
	if m.F < 1 || m.F > maxDim || m.E < 0 || m.E > maxDim || m.H1 < 1 || m.H1 > maxDim || m.H2 < 1 || m.H2 > maxDim || m.K < 2 || m.K > maxClasses {
		return malformed("dimensions F=%d E=%d H1=%d H2=%d K=%d out of range", m.F, m.E, m.H1, m.H2, m.K)
	}
	return nil
}

func (m *Model) check() error {
	if err := m.dimsOK(); err != nil {
		return err
	}
	if !(m.Threshold >= 0 && m.Threshold <= 1) {
		return malformed("threshold %v outside [0, 1]", m.Threshold)
	}
	names := []string{"mean", "std", "edge mean", "edge std", "W1", "B1", "W2", "B2", "Wo", "Bo"}
	for i, t := range m.tensors() {
		if len(t) != m.sizes()[i] {
			return malformed("%s has %d values, want %d", names[i], len(t), m.sizes()[i])
		}
		for _, v := range t {
			if math.IsNaN(v) || math.IsInf(v, 0) {
				return malformed("%s holds a non-finite value", names[i])
			}
			if (i == 1 || i == 3) && !(v > 0) {
				return malformed("%s holds %v, must be positive", names[i], v)
			}
		}
	}
	return nil
}

func (e *Ensemble) check() error {
	if n := len(e.Members); n < 2 || n > MaxMembers {
		return malformed("ensemble of %d members, want 2–%d", n, MaxMembers)
	}
	if !(e.Threshold >= 0 && e.Threshold <= 1) {
		return malformed("threshold %v outside [0, 1]", e.Threshold)
	}
	for i, mb := range e.Members {
		if mb == nil {
			return malformed("ensemble member %d is missing", i)
		}
		if s, s0 := mb.Shape(), e.Members[0].Shape(); s != s0 {
			return malformed("ensemble member %d has F=%d E=%d K=%d, the ensemble F=%d E=%d K=%d", i, s.F, s.E, s.K, s0.F, s0.E, s0.K)
		}
		if err := mb.check(); err != nil {
			return memberMalformed(i, err)
		}
	}
	return nil
}

// UnmarshalModel decodes a version-2 model file as a *Model, or a version-3 ensemble of them as an
// *Ensemble, strictly: exact length, bounded dimensions, finite numbers, matching checksums. Code
// that trains needs a *Model and must refuse an *Ensemble with an error of its own.
func UnmarshalModel(b []byte) (Predictor, error) {
	if err := checkHeader(b); err != nil {
		return nil, err
	}
	if b[4] == ensembleVersion {
		e, err := unmarshalEnsemble(b)
		if err != nil {
			return nil, err
		}
		return e, nil
	}
	m, err := unmarshalSingle(b)
	if err != nil {
		return nil, err
	}
	return m, nil
}

// checkHeader checks the magic and that the version is one this build reads.
func checkHeader(b []byte) error {
	if len(b) < 6 {
		return malformed("%d bytes, shorter than the header", len(b))
	}
	if string(b[:4]) != fileMagic {
		return malformed("bad magic %q (not an x0tta6bl4 model)", b[:4])
	}
	if b[4] == 1 {
		return malformed("version 1 (a model without edge features, for the old feature set): this build reads versions %d and %d; retrain with x0tta6bl4 ai train", fileVersion, ensembleVersion)
	}
	if b[4] != fileVersion && b[4] != ensembleVersion {
		return malformed("version %d, this build reads versions %d and %d", b[4], fileVersion, ensembleVersion)
	}
	return nil
}

// unmarshalSingle decodes a version-2 file whose header checkHeader accepted.
func unmarshalSingle(b []byte) (*Model, error) {
	if len(b) < headerLen+sha256.Size {
		return nil, malformed("%d bytes, shorter than the header", len(b))
	}
	if b[5] != 0 {
		return nil, malformed("unknown flags %#x", b[5])
	}
	d := func(i int) int { return int(binary.BigEndian.Uint16(b[6+2*i:])) }
	m := &Model{F: d(0), E: d(1), H1: d(2), H2: d(3), K: d(4)}
	if err := m.dimsOK(); err != nil {
		return nil, err
	}
	total := 0
	for _, s := range m.sizes() {
		total += s
	}
	if want := headerLen + 8*total + sha256.Size; len(b) != want {
		return nil, malformed("%d bytes, want %d for these dimensions", len(b), want)
	}
	body := b[:len(b)-sha256.Size]
	if sum := sha256.Sum256(body); !bytes.Equal(sum[:], b[len(body):]) {
		return nil, malformed("checksum mismatch (file damaged)")
	}
	m.Threshold = math.Float64frombits(binary.BigEndian.Uint64(b[headerLen-8:]))
	off := headerLen
	ts := make([][]float64, len(m.sizes()))
	for i, s := range m.sizes() {
		ts[i] = make([]float64, s)
		for j := range ts[i] {
			ts[i][j] = math.Float64frombits(binary.BigEndian.Uint64(b[off:]))
			off += 8
		}
	}
	m.Mean, m.Std, m.EMean, m.EStd = ts[0], ts[1], ts[2], ts[3]
	m.W1, m.B1, m.W2, m.B2, m.Wo, m.Bo = ts[4], ts[5], ts[6], ts[7], ts[8], ts[9]
	if err := m.check(); err != nil {
		return nil, err
	}
	return m, nil
}

// memberMalformed says which member of an ensemble is malformed, and why.
func memberMalformed(i int, err error) error {
	return malformed("ensemble member %d: %s", i, strings.TrimPrefix(err.Error(), ErrMalformed.Error()+": "))
}

// unmarshalEnsemble decodes a version-3 file whose header checkHeader accepted.
func unmarshalEnsemble(b []byte) (*Ensemble, error) {
	if len(b) < ensembleHeader+sha256.Size {
		return nil, malformed("%d bytes, shorter than an ensemble's header", len(b))
	}
	body := b[:len(b)-sha256.Size]
	if sum := sha256.Sum256(body); !bytes.Equal(sum[:], b[len(body):]) {
		return nil, malformed("checksum mismatch (file damaged)")
	}
	if b[5] != 0 {
		return nil, malformed("unknown flags %#x", b[5])
	}
	n := int(b[6])
	if n < 2 || n > MaxMembers {
		return nil, malformed("ensemble of %d members, want 2–%d", n, MaxMembers)
	}
	threshold := math.Float64frombits(binary.BigEndian.Uint64(b[7:]))
	rest := body[ensembleHeader:]
	members := make([]*Model, 0, n)
	for i := range n {
		if len(rest) < 4 {
			return nil, malformed("ensemble member %d: truncated length", i)
		}
		l := binary.BigEndian.Uint32(rest)
		rest = rest[4:]
		if uint64(l) > uint64(len(rest)) {
			return nil, malformed("ensemble member %d: %d bytes, %d left", i, l, len(rest))
		}
		mb := rest[:l]
		rest = rest[l:]
		if len(mb) > 4 && mb[4] != fileVersion {
			return nil, malformed("ensemble member %d: version %d, members are version %d", i, mb[4], fileVersion)
		}
		if err := checkHeader(mb); err != nil {
			return nil, memberMalformed(i, err)
		}
		m, err := unmarshalSingle(mb)
		if err != nil {
			return nil, memberMalformed(i, err)
		}
		members = append(members, m)
	}
	if len(rest) != 0 {
		return nil, malformed("%d bytes after the ensemble's last member", len(rest))
	}
	e := &Ensemble{Members: members, Threshold: threshold}
	if err := e.check(); err != nil {
		return nil, err
	}
	return e, nil
}

// Version identifies the model: the first 8 bytes of the SHA-256 of its encoding, in hex.
func (m *Model) Version() string { return version(m.MarshalBinary()) }

// Version identifies the ensemble as Model.Version does a model.
func (e *Ensemble) Version() string { return version(e.MarshalBinary()) }

func version(b []byte, err error) string {
	if err != nil {
		return "invalid"
	}
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:8])
}

// Save writes the model to path (mode 0644, replacing it).
func (m *Model) Save(path string) error { return save(path, m.MarshalBinary) }

// Save writes the ensemble to path (mode 0644, replacing it).
func (e *Ensemble) Save(path string) error { return save(path, e.MarshalBinary) }

func save(path string, marshal func() ([]byte, error)) error {
	b, err := marshal()
	if err != nil {
		return err
	}
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, b, 0o644); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}

// Load reads a model file (at most MaxFileSize bytes) as UnmarshalModel decodes it.
func Load(path string) (Predictor, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, MaxFileSize+1))
	if err != nil {
		return nil, err
	}
	if len(b) > MaxFileSize {
		return nil, malformed("larger than %d bytes", MaxFileSize)
	}
	m, err := UnmarshalModel(b)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return m, nil
}
