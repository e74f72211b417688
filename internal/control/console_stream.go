package control

import (
	"bytes"
	"encoding/json"
	"math"
	"strconv"
	"time"

	"x0tta6bl4/internal/control/api"
)

// mapStream is one console event stream's memory of what it last sent, so that after the first
// snapshot it sends only what changed (docs/console.md, "Live updates"). At 1,000 nodes the whole
// map is ~50 KB in this form, against ~290 KB as GET /api/v1/console/topology; a diff is usually a
// few hundred bytes (a node's state) or the links whose rounded figures moved.
//
// Encoding (JSON arrays, not objects, to keep it small):
//
//	snapshot {"at", "stale_after_seconds", "detector", "nodes": [node...], "links": [[ia, ib, rtt_ms, loss, confirmed]...]}
//	diff     {"at", "nodes": [node...] (new or changed), "gone": [name...], "links": [[a, b, rtt_ms, loss, confirmed]...], "cut": [[a, b]...]}
//	node     [name, status, score or null, anomalous]
//
// ia and ib index the snapshot's nodes; anomalous and confirmed are 0 or 1. Figures are rounded
// (RTT to 0.1 ms, loss to 0.0001, score to 0.001) so that noise below what the map shows does not
// make a diff.
type mapStream struct {
	nodes map[string][]byte    // name → encoded node entry
	links map[[2]string][]byte // pair → encoded "rtt,loss,confirmed"
}

func newMapStream() *mapStream {
	return &mapStream{nodes: map[string][]byte{}, links: map[[2]string][]byte{}}
}

// snapshot encodes t whole and remembers it as sent.
func (m *mapStream) snapshot(t *api.Topology) []byte {
	clear(m.nodes)
	clear(m.links)
	var b bytes.Buffer
	b.WriteString(`{"at":`)
	b.Write(jsonTime(t.GeneratedAt))
	b.WriteString(`,"stale_after_seconds":`)
	b.WriteString(strconv.FormatInt(t.StaleAfterSeconds, 10))
	b.WriteString(`,"detector":`)
	b.WriteString(strconv.FormatBool(t.Detector))
	b.WriteString(`,"nodes":[`)
	index := make(map[string]int, len(t.Nodes))
	for i, n := range t.Nodes {
		e := encodeMapNode(n)
		m.nodes[n.Name] = e
		index[n.Name] = i
		if i > 0 {
			b.WriteByte(',')
		}
		b.Write(e)
	}
	b.WriteString(`],"links":[`)
	first := true
	for _, l := range t.Links {
		ia, okA := index[l.A]
		ib, okB := index[l.B]
		if !okA || !okB {
			continue
		}
		v := encodeMapLink(l)
		m.links[[2]string{l.A, l.B}] = v
		if !first {
			b.WriteByte(',')
		}
		first = false
		b.WriteByte('[')
		b.WriteString(strconv.Itoa(ia))
		b.WriteByte(',')
		b.WriteString(strconv.Itoa(ib))
		b.WriteByte(',')
		b.Write(v)
		b.WriteByte(']')
	}
	b.WriteString(`]}`)
	return b.Bytes()
}

// diff encodes what changed in t since the last snapshot or diff and remembers t as sent; changed
// is false when nothing did (the document then only carries the time, for a heartbeat).
func (m *mapStream) diff(t *api.Topology) (doc []byte, changed bool) {
	var nodes, gone, links, cut [][]byte
	seen := make(map[string]bool, len(t.Nodes))
	for _, n := range t.Nodes {
		seen[n.Name] = true
		e := encodeMapNode(n)
		if old, ok := m.nodes[n.Name]; !ok || !bytes.Equal(old, e) {
			m.nodes[n.Name] = e
			nodes = append(nodes, e)
		}
	}
	for name := range m.nodes {
		if !seen[name] {
			delete(m.nodes, name)
			gone = append(gone, jsonString(name))
		}
	}
	pairs := make(map[[2]string]bool, len(t.Links))
	for _, l := range t.Links {
		if !seen[l.A] || !seen[l.B] {
			continue
		}
		key := [2]string{l.A, l.B}
		pairs[key] = true
		v := encodeMapLink(l)
		if old, ok := m.links[key]; !ok || !bytes.Equal(old, v) {
			m.links[key] = v
			links = append(links, bytes.Join([][]byte{[]byte("["), jsonString(l.A), []byte(","), jsonString(l.B), []byte(","), v, []byte("]")}, nil))
		}
	}
	for key := range m.links {
		if !pairs[key] {
			delete(m.links, key)
			cut = append(cut, bytes.Join([][]byte{[]byte("["), jsonString(key[0]), []byte(","), jsonString(key[1]), []byte("]")}, nil))
		}
	}
	var b bytes.Buffer
	b.WriteString(`{"at":`)
	b.Write(jsonTime(t.GeneratedAt))
	for _, part := range []struct {
		name string
		list [][]byte
	}{{"nodes", nodes}, {"gone", gone}, {"links", links}, {"cut", cut}} {
		if len(part.list) == 0 {
			continue
		}
		b.WriteString(`,"` + part.name + `":[`)
		b.Write(bytes.Join(part.list, []byte(",")))
		b.WriteByte(']')
	}
	b.WriteByte('}')
	return b.Bytes(), len(nodes)+len(gone)+len(links)+len(cut) > 0
}

func encodeMapNode(n api.TopologyNode) []byte {
	b := []byte{'['}
	b = append(b, jsonString(n.Name)...)
	b = append(b, ',')
	b = append(b, jsonString(n.Status)...)
	b = append(b, ',')
	if n.Score != nil {
		b = appendRounded(b, *n.Score, 1000)
	} else {
		b = append(b, "null"...)
	}
	return append(append(b, ','), bit(n.Anomalous), ']')
}

func encodeMapLink(l api.TopologyLink) []byte {
	b := appendRounded(nil, l.RTTMillis, 10)
	b = append(b, ',')
	b = appendRounded(b, l.LossRatio, 10000)
	return append(append(b, ','), bit(l.Confirmed))
}

// appendRounded appends x rounded to 1/per; figures a report could make infinite or NaN (the
// report's validation refuses them) are written as 0 rather than as invalid JSON.
func appendRounded(b []byte, x, per float64) []byte {
	r := math.Round(x*per) / per
	if math.IsNaN(r) || math.IsInf(r, 0) {
		r = 0
	}
	return strconv.AppendFloat(b, r, 'f', -1, 64)
}

func bit(v bool) byte {
	if v {
		return '1'
	}
	return '0'
}

func jsonString(s string) []byte {
	b, _ := json.Marshal(s) // a string always marshals
	return b
}

func jsonTime(t time.Time) []byte {
	b, _ := json.Marshal(t.UTC()) // times from the clock are within JSON's range
	return b
}
