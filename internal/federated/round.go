package federated

// Rounds between mesh nodes (docs/federated.md): the coordinator's signed round announcement, the
// participant's update envelope, and the round state machine of both sides. Nothing here touches the
// network; transport.go carries these messages over HTTP.

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"math"
	"net/netip"
	"slices"
	"sync"
	"time"

	"x0tta6bl4/internal/detector"
	"x0tta6bl4/internal/detector/train"
	"x0tta6bl4/internal/identity"
	"x0tta6bl4/internal/meshca"
)

// AnnouncementContext separates round announcement signatures from every other use of a node key.
const AnnouncementContext = "x0tta6bl4 model round v1"

const (
	annMagic   = "X6FR"
	annVersion = 1
	maxClasses = 256
	// MaxAnnouncementSize bounds an encoded announcement (the model file plus at most 64 KiB).
	MaxAnnouncementSize = detector.MaxFileSize + 64<<10
	// DefaultMaxParticipants bounds the updates a coordinator holds in one round.
	DefaultMaxParticipants = 256
)

// Kind is what a round asks of the participants.
type Kind uint8

// Round kinds.
const (
	KindStats Kind = 1 // send normalisation moments and class counts
	KindTrain Kind = 2 // train locally and send the parameter change
	KindFinal Kind = 3 // the finished model; nothing to send
)

func (k Kind) String() string {
	switch k {
	case KindStats:
		return "statistics"
	case KindTrain:
		return "train"
	case KindFinal:
		return "final"
	}
	return fmt.Sprintf("kind(%d)", uint8(k))
}

// Errors of the round protocol, wrapped with the reason. ErrBadUpdate (federated.go) is returned for
// an update whose signature, size or numbers are refused.
var (
	ErrBadAnnouncement = errors.New("federated: round announcement refused")
	ErrMalformed       = errors.New("federated: malformed request")
	ErrUnauthorised    = errors.New("federated: not authorised")
	ErrRound           = errors.New("federated: not the open round")
	ErrDuplicate       = errors.New("federated: node already sent an update this round")
	ErrFull            = errors.New("federated: round is full")
)

// Announcement opens a round: what to do, and the global model to start from.
type Announcement struct {
	Kind        Kind
	Round       uint32
	LocalEpochs int
	LR          float64
	Seed        uint64    // mixed with each participant's key ID for its local training order
	Weights     []float64 // class loss weights (empty in a statistics round)
	Model       *detector.Model
	Signer      identity.KeyID
}

// EncodeAnnouncement signs and encodes a (docs/federated.md).
func EncodeAnnouncement(key *identity.SigningKey, a *Announcement) ([]byte, error) {
	if a.Model == nil || len(a.Weights) > maxClasses || a.LocalEpochs < 0 || a.LocalEpochs > math.MaxUint16 {
		return nil, errors.New("federated: announcement out of range")
	}
	mb, err := a.Model.MarshalBinary()
	if err != nil {
		return nil, err
	}
	var b bytes.Buffer
	b.WriteString(annMagic)
	b.WriteByte(annVersion)
	b.WriteByte(byte(a.Kind))
	be := func(v any) { binary.Write(&b, binary.BigEndian, v) }
	be(a.Round)
	be(uint16(a.LocalEpochs))
	be(math.Float64bits(a.LR))
	be(a.Seed)
	be(uint16(len(a.Weights)))
	for _, w := range a.Weights {
		be(math.Float64bits(w))
	}
	be(uint32(len(mb)))
	b.Write(mb)
	id := key.PublicKey().ID()
	b.Write(id[:])
	sig, err := key.Sign(AnnouncementContext, b.Bytes())
	if err != nil {
		return nil, err
	}
	be(uint16(len(sig)))
	b.Write(sig)
	return b.Bytes(), nil
}

// DecodeAnnouncement checks an announcement's signature with the coordinator's key and decodes it
// strictly (exact length, known kind, finite numbers, a valid model file).
func DecodeAnnouncement(b []byte, coordinator *identity.VerifyKey) (*Announcement, error) {
	bad := func(f string, a ...any) error {
		return fmt.Errorf("%w: %s", ErrBadAnnouncement, fmt.Sprintf(f, a...))
	}
	if len(b) > MaxAnnouncementSize {
		return nil, bad("%d bytes, at most %d", len(b), MaxAnnouncementSize)
	}
	r := bytes.NewReader(b)
	var head struct {
		Magic   [4]byte
		Version uint8
		Kind    Kind
		Round   uint32
		Epochs  uint16
		LR      uint64
		Seed    uint64
		K       uint16
	}
	if binary.Read(r, binary.BigEndian, &head) != nil || string(head.Magic[:]) != annMagic || head.Version != annVersion {
		return nil, bad("not a version-1 round announcement")
	}
	if head.Kind < KindStats || head.Kind > KindFinal {
		return nil, bad("unknown kind %d", head.Kind)
	}
	if head.K > maxClasses || r.Len() < 8*int(head.K)+4 {
		return nil, bad("truncated")
	}
	ws := make([]uint64, head.K)
	binary.Read(r, binary.BigEndian, ws)
	var ml uint32
	binary.Read(r, binary.BigEndian, &ml)
	body := len(b) - r.Len() + int(ml) + 32 // end of the signed part
	if int64(ml) > int64(r.Len()) || len(b) < body+2 {
		return nil, bad("truncated")
	}
	sl := int(binary.BigEndian.Uint16(b[body:]))
	if len(b) != body+2+sl {
		return nil, bad("length %d, want %d", len(b), body+2+sl)
	}
	var signer identity.KeyID
	copy(signer[:], b[body-32:body])
	if coordinator == nil || signer != coordinator.ID() {
		return nil, bad("signer %s is not the coordinator", signer)
	}
	if err := coordinator.Verify(AnnouncementContext, b[:body], b[body+2:]); err != nil {
		return nil, bad("signature: %v", err)
	}
	a := &Announcement{Kind: head.Kind, Round: head.Round, LocalEpochs: int(head.Epochs), LR: math.Float64frombits(head.LR),
		Seed: head.Seed, Signer: signer}
	for _, w := range ws {
		a.Weights = append(a.Weights, math.Float64frombits(w))
	}
	for _, v := range append([]float64{a.LR}, a.Weights...) {
		if math.IsNaN(v) || math.IsInf(v, 0) || v < 0 {
			return nil, bad("learning rate or class weight out of range")
		}
	}
	p, err := detector.UnmarshalModel(b[body-32-int(ml) : body-32])
	if err != nil {
		return nil, bad("model: %v", err)
	}
	m, ok := p.(*detector.Model)
	if !ok {
		return nil, bad("model: an ensemble; rounds train a single model")
	}
	if len(a.Weights) != 0 && len(a.Weights) != m.K {
		return nil, bad("%d class weights for %d classes", len(a.Weights), m.K)
	}
	a.Model = m
	return a, nil
}

// EncodeEnvelope is the body of an update request: u16 certificate length, the sender's mesh
// certificate, the signed X6FU update.
func EncodeEnvelope(cert *meshca.Certificate, update []byte) []byte {
	cb := cert.Bytes()
	out := binary.BigEndian.AppendUint16(make([]byte, 0, 2+len(cb)+len(update)), uint16(len(cb)))
	return append(append(out, cb...), update...)
}

// StatsDim is the length of a statistics round's vector for model m: node-intervals and directed
// links (2), then train.Moments' Σx and Σx² of the node features (2F) and of the aggregated edge
// features (incoming and outgoing means: 2E each, 4E), then the class counts (K).
func StatsDim(m *detector.Model) int { return 2 + 2*m.F + 4*m.E + m.K }

// statsVector lays out moments and class counts as StatsDim describes.
func statsVector(mo *train.Moments, counts []float64) []float64 {
	v := []float64{mo.N, mo.EN}
	for _, p := range [][]float64{mo.Sum, mo.Sq, mo.ESum, mo.ESq, counts} {
		v = append(v, p...)
	}
	return v
}

// statsFromVector is statsVector's inverse; it reports false for a negative count or square sum.
func statsFromVector(m *detector.Model, v []float64) (*train.Moments, []float64, bool) {
	mo := train.NewMoments(m.F, m.E)
	mo.N, mo.EN = v[0], v[1]
	i := 2
	for _, p := range [][]float64{mo.Sum, mo.Sq, mo.ESum, mo.ESq} {
		i += copy(p, v[i:])
	}
	counts := v[i:]
	for _, p := range [][]float64{{mo.N, mo.EN}, mo.Sq, mo.ESq, counts} {
		for _, x := range p {
			if x < 0 {
				return nil, nil, false
			}
		}
	}
	return mo, counts, true
}

// LocalUpdate computes a participant's answer to an announcement from its own graphs: the moments
// and class counts in a statistics round, the parameter change after LocalEpochs of training from
// the global model in a train round. seed individualises the training order (the participant's key).
func LocalUpdate(a *Announcement, data []detector.Graph, seed uint64) (*Update, error) {
	m := a.Model
	if len(data) == 0 {
		return nil, errors.New("federated: no local data")
	}
	var n int
	for _, g := range data {
		n += len(g.X)
	}
	u := &Update{Round: a.Round, Samples: uint32(min(n, math.MaxUint32))}
	switch a.Kind {
	case KindStats:
		mo := train.NewMoments(m.F, m.E)
		counts := make([]float64, m.K)
		for i := range data {
			if err := m.CheckGraph(&data[i]); err != nil {
				return nil, fmt.Errorf("federated: local graph %d: %w", i, err)
			}
			if len(data[i].Y) != len(data[i].X) {
				return nil, errors.New("federated: unlabelled graph")
			}
			mo.Add(&data[i])
			for _, y := range data[i].Y {
				if y >= 0 && y < m.K {
					counts[y]++
				}
			}
		}
		u.Delta = statsVector(mo, counts)
	case KindTrain:
		local := m.Clone()
		if _, err := train.Run(local, data, train.Config{Epochs: max(a.LocalEpochs, 1), LR: a.LR, Seed: a.Seed ^ seed, Weights: a.Weights}); err != nil {
			return nil, err
		}
		u.Delta = local.Params()
		base := m.Params()
		for i := range u.Delta {
			u.Delta[i] -= base[i]
		}
	default:
		return nil, fmt.Errorf("federated: nothing to send in a %s round", a.Kind)
	}
	return u, nil
}

// CoordinatorConfig configures a Coordinator. Zero values take the defaults shown.
type CoordinatorConfig struct {
	Key      *identity.SigningKey // the coordinator node's ML-DSA-65 key
	Verifier *meshca.Verifier     // the mesh CA: who may participate
	Group    string               // if set, participants' certificates must list it
	// Model is the initial global model (architecture and initial weights); its normalisation is set
	// by the statistics round.
	Model           *detector.Model
	LocalEpochs     int     // 2
	LR              float64 // 0.005
	Seed            uint64
	Rule            Rule    // TrimmedMean
	Trim            float64 // 0.2
	NoClip          bool
	Krum            int    // Multi-Krum's assumed Byzantine participants per round (0: off), as TrainConfig.Krum
	MaxParticipants int    // DefaultMaxParticipants
	FirstRound      uint32 // 0: random in [1, 2³¹)
	Now             func() time.Time
}

// RoundResult describes a closed round.
type RoundResult struct {
	Kind     Kind
	Round    uint32
	Accepted int
	Refused  int // requests refused while the round was open, other than Late ones
	// Late counts the updates for another round (or sent when none was open) that arrived while
	// this one was open: a participant's retry after its request timed out, not misbehaviour.
	Late     int
	ClipNorm float64 // train rounds: the median update norm every update was clipped to
	Bytes    int     // update request bodies accepted (envelope: certificate + update)
	Took     time.Duration
}

// Coordinator runs rounds: it publishes the signed announcement of the open round, checks and
// collects updates (Submit), and aggregates them into the next global model (Close). It is safe for
// concurrent use.
type Coordinator struct {
	cfg CoordinatorConfig

	mu       sync.Mutex
	model    *detector.Model
	weights  []float64
	round    uint32
	kind     Kind
	open     bool
	opened   time.Time
	ann      []byte
	etag     string // HTTP entity tag of ann: a hash prefix
	got      map[identity.KeyID]*Update
	bytes    int
	refused  int
	late     int
	notify   chan struct{} // closed and replaced on every accepted update
	finished bool
}

// NewCoordinator checks cfg and returns a coordinator with no round open.
func NewCoordinator(cfg CoordinatorConfig) (*Coordinator, error) {
	if cfg.Key == nil || cfg.Verifier == nil || cfg.Model == nil {
		return nil, errors.New("federated: coordinator needs a key, a verifier and an initial model")
	}
	roundDefaults(&cfg.LocalEpochs, &cfg.LR, &cfg.Rule, &cfg.Trim)
	if cfg.MaxParticipants <= 0 {
		cfg.MaxParticipants = DefaultMaxParticipants
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	r := cfg.FirstRound
	if r == 0 {
		var b [4]byte
		rand.Read(b[:])
		r = binary.BigEndian.Uint32(b[:])>>1 | 1
	}
	return &Coordinator{cfg: cfg, model: cfg.Model.Clone(), round: r - 1, notify: make(chan struct{})}, nil
}

// Open opens the next round of the given kind and signs its announcement. A final round stays
// published; no round can follow it.
func (c *Coordinator) Open(kind Kind) (uint32, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if kind < KindStats || kind > KindFinal {
		return 0, fmt.Errorf("federated: unknown round kind %d", kind)
	}
	if c.open || c.finished {
		return 0, errors.New("federated: a round is open or the run is finished")
	}
	if kind == KindTrain && c.weights == nil {
		return 0, errors.New("federated: a statistics round must come first")
	}
	if c.round == math.MaxUint32 {
		return 0, errors.New("federated: out of round numbers")
	}
	a := &Announcement{Kind: kind, Round: c.round + 1, LocalEpochs: c.cfg.LocalEpochs, LR: c.cfg.LR,
		Seed: c.cfg.Seed + uint64(c.round+1), Weights: c.weights, Model: c.model}
	b, err := EncodeAnnouncement(c.cfg.Key, a)
	if err != nil {
		return 0, err
	}
	c.round++
	sum := sha256.Sum256(b)
	c.etag = `"` + hex.EncodeToString(sum[:12]) + `"`
	c.kind, c.ann, c.open, c.opened = kind, b, kind != KindFinal, time.Now()
	c.finished = kind == KindFinal
	c.got, c.bytes, c.refused, c.late = map[identity.KeyID]*Update{}, 0, 0, 0
	return c.round, nil
}

// Announcement returns the current signed announcement (nil before the first round).
func (c *Coordinator) Announcement() []byte {
	b, _ := c.announcement()
	return b
}

func (c *Coordinator) announcement() ([]byte, string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.ann, c.etag
}

// Model returns a copy of the current global model.
func (c *Coordinator) Model() *detector.Model {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.model.Clone()
}

// MaxBody is the largest update request body the open round can need.
func (c *Coordinator) MaxBody() int64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	return int64(2 + meshca.MaxCertificateSize + updateSize(c.dim()))
}

func updateSize(dim int) int { return 17 + 8*dim + 32 + 2 + 4096 } // ML-DSA-65 signatures are 3309 bytes

func (c *Coordinator) dim() int {
	if c.kind == KindStats {
		return StatsDim(c.model)
	}
	return len(c.model.Params())
}

// Submit checks one update request from overlay address src (docs/federated.md, "Authorisation")
// and keeps it for the open round.
func (c *Coordinator) Submit(src netip.Addr, body []byte) (*Update, error) {
	u, err := c.submit(src, body)
	if err != nil {
		c.mu.Lock()
		if errors.Is(err, ErrRound) {
			c.late++
		} else {
			c.refused++
		}
		c.mu.Unlock()
	}
	return u, err
}

func (c *Coordinator) submit(src netip.Addr, body []byte) (*Update, error) {
	c.mu.Lock()
	open, round, dim, kind := c.open, c.round, c.dim(), c.kind
	c.mu.Unlock()
	if !open {
		return nil, fmt.Errorf("%w: no round is open", ErrRound)
	}
	if len(body) < 2 {
		return nil, fmt.Errorf("%w: empty body", ErrMalformed)
	}
	cl := int(binary.BigEndian.Uint16(body))
	if len(body) < 2+cl+17 {
		return nil, fmt.Errorf("%w: truncated", ErrMalformed)
	}
	cert, err := meshca.ParseCertificate(body[2 : 2+cl])
	if err != nil {
		return nil, fmt.Errorf("%w: certificate: %v", ErrMalformed, err)
	}
	if err := c.cfg.Verifier.Verify(cert, c.cfg.Now()); err != nil {
		return nil, fmt.Errorf("%w: certificate %s: %v", ErrUnauthorised, cert.Name, err)
	}
	if c.cfg.Group != "" && !cert.InGroup(c.cfg.Group) {
		return nil, fmt.Errorf("%w: %s is not in group %q", ErrUnauthorised, cert.Name, c.cfg.Group)
	}
	if src.Unmap() != cert.Overlay {
		return nil, fmt.Errorf("%w: certificate of %s (%s) sent from %s", ErrUnauthorised, cert.Name, cert.Overlay, src)
	}
	ub := body[2+cl:]
	if r := binary.BigEndian.Uint32(ub[5:]); string(ub[:4]) == updMagic && r != round {
		return nil, fmt.Errorf("%w: update for round %d, round %d is open", ErrRound, r, round)
	}
	key := cert.SignPublicKey
	u, err := Decode(ub, map[identity.KeyID]*identity.VerifyKey{key.ID(): key}, round, dim)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", cert.Name, err)
	}
	if kind == KindStats {
		if _, _, ok := statsFromVector(c.model, u.Delta); !ok {
			return nil, fmt.Errorf("%s: %w: negative count or square sum", cert.Name, ErrBadUpdate)
		}
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	switch {
	case !c.open || c.round != round:
		return nil, fmt.Errorf("%w: round %d closed", ErrRound, round)
	case c.got[u.Signer] != nil:
		return nil, fmt.Errorf("%w: %s, round %d", ErrDuplicate, cert.Name, round)
	case len(c.got) >= c.cfg.MaxParticipants:
		return nil, fmt.Errorf("%w: %d updates", ErrFull, len(c.got))
	}
	c.got[u.Signer] = u
	c.bytes += len(body)
	close(c.notify)
	c.notify = make(chan struct{})
	return u, nil
}

// Accepted reports how many updates the open round holds.
func (c *Coordinator) Accepted() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.got)
}

// Wait blocks until the open round holds at least n updates or ctx ends.
func (c *Coordinator) Wait(ctx context.Context, n int) error {
	for {
		c.mu.Lock()
		have, ch := len(c.got), c.notify
		c.mu.Unlock()
		if have >= n {
			return nil
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return fmt.Errorf("federated: %d of %d updates: %w", have, n, ctx.Err())
		}
	}
}

// Close closes the open round and aggregates its updates into the global model: a statistics round
// sets the normalisation and class weights from the summed moments (sample-weighted, not robust); a
// train round combines the updates as Train does (Combine: clipping, Multi-Krum, the rule). With no
// usable update the model is left as it was and an error returned.
func (c *Coordinator) Close() (*RoundResult, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.open {
		return nil, errors.New("federated: no round is open")
	}
	c.open = false
	res := &RoundResult{Kind: c.kind, Round: c.round, Accepted: len(c.got), Refused: c.refused, Late: c.late, Bytes: c.bytes, Took: time.Since(c.opened)}
	if len(c.got) == 0 {
		return res, fmt.Errorf("federated: round %d closed with no update", c.round)
	}
	// Map order is random: aggregate in key order so the result does not depend on it.
	ids := make([]identity.KeyID, 0, len(c.got))
	for id := range c.got {
		ids = append(ids, id)
	}
	slices.SortFunc(ids, func(a, b identity.KeyID) int { return bytes.Compare(a[:], b[:]) })
	us := make([]*Update, len(ids))
	for i, id := range ids {
		us[i] = c.got[id]
	}
	c.got = nil
	m := c.model
	if c.kind == KindStats {
		total := train.NewMoments(m.F, m.E)
		counts := make([]float64, m.K)
		for _, u := range us {
			mo, cs, _ := statsFromVector(m, u.Delta) // checked by Submit
			total.Merge(mo)
			for i, x := range cs {
				counts[i] += x
			}
		}
		if total.N == 0 {
			return res, errors.New("federated: statistics round with no samples")
		}
		total.Apply(m)
		c.weights = classWeights(counts)
		return res, nil
	}
	agg, clip, err := Combine(us, c.cfg.Rule, c.cfg.Trim, c.cfg.NoClip, c.cfg.Krum)
	res.ClipNorm = clip
	if err != nil {
		return res, err
	}
	p := m.Params()
	for i := range p {
		p[i] += agg[i]
	}
	if err := m.SetParams(p); err != nil {
		return res, err
	}
	return res, nil
}

// classWeights is train.ClassWeights from counts: sqrt(normal / class), 1 for every present class if
// there is no normal sample.
func classWeights(counts []float64) []float64 {
	w := make([]float64, len(counts))
	for i, c := range counts {
		if c > 0 {
			w[i] = math.Sqrt(counts[0] / c)
			if counts[0] == 0 {
				w[i] = 1
			}
		}
	}
	return w
}

// RunRound opens a round of kind, waits until want updates arrived or timeout passed, and closes it.
func (c *Coordinator) RunRound(ctx context.Context, kind Kind, want int, timeout time.Duration) (*RoundResult, error) {
	if _, err := c.Open(kind); err != nil {
		return nil, err
	}
	wctx, cancel := context.WithTimeout(ctx, timeout)
	werr := c.Wait(wctx, want)
	cancel()
	res, err := c.Close()
	if err == nil && werr != nil && ctx.Err() != nil {
		err = werr
	}
	return res, err
}
