package node

import (
	"bytes"
	"fmt"
	"runtime"
	"runtime/metrics"
	"runtime/pprof"
)

// The admin socket's "memory" op reports the Go runtime's memory figures and "heap_profile" adds a
// pprof heap profile (inuse and alloc, the same as net/http/pprof's /debug/pprof/heap). Both exist so
// that bench/rss.sh can tell Go heap growth from memory the runtime holds but has not returned to the
// system. They are on the admin socket, not on metrics_listen, because the socket is mode 0600: only
// the node's user (who could attach a debugger anyway) reads them. The profile is the runtime's own
// sampling (runtime.MemProfileRate, one sample per 512 KiB allocated), always on in every Go program;
// asking for it costs one walk of the sampled stacks and nothing while nobody asks.

// MemoryStatus is a snapshot of the runtime's memory figures, in bytes.
type MemoryStatus struct {
	HeapAlloc    uint64 `json:"heap_alloc"`    // live and not yet swept heap objects
	HeapInuse    uint64 `json:"heap_inuse"`    // heap spans with at least one object
	HeapIdle     uint64 `json:"heap_idle"`     // heap spans with none, returned or not
	HeapReleased uint64 `json:"heap_released"` // of HeapIdle, returned to the system
	HeapSys      uint64 `json:"heap_sys"`
	StackInuse   uint64 `json:"stack_inuse"`
	Sys          uint64 `json:"sys"` // everything the runtime obtained from the system
	NextGC       uint64 `json:"next_gc"`
	NumGC        uint32 `json:"num_gc"`
	Goroutines   int    `json:"goroutines"`
	GOGC         int    `json:"gogc"`         // -1: off
	MemoryLimit  int64  `json:"memory_limit"` // GOMEMLIMIT; math.MaxInt64 when unset
	HeapProfile  []byte `json:"heap_profile,omitempty"`
}

// Memory returns the runtime's memory figures, with a gzipped pprof heap profile if profile is set.
func Memory(profile bool) (MemoryStatus, error) {
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	gc := []metrics.Sample{{Name: "/gc/gogc:percent"}, {Name: "/gc/gomemlimit:bytes"}}
	metrics.Read(gc)
	m := MemoryStatus{HeapAlloc: ms.HeapAlloc, HeapInuse: ms.HeapInuse, HeapIdle: ms.HeapIdle,
		HeapReleased: ms.HeapReleased, HeapSys: ms.HeapSys, StackInuse: ms.StackInuse, Sys: ms.Sys,
		NextGC: ms.NextGC, NumGC: ms.NumGC, Goroutines: runtime.NumGoroutine(), GOGC: int(int64(gc[0].Value.Uint64())),
		MemoryLimit: int64(gc[1].Value.Uint64())}
	if profile {
		var b bytes.Buffer
		if err := pprof.Lookup("heap").WriteTo(&b, 0); err != nil {
			return MemoryStatus{}, fmt.Errorf("heap profile: %w", err)
		}
		m.HeapProfile = b.Bytes()
	}
	return m, nil
}
