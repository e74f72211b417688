package node

import (
	"runtime"
	"sync"
	"sync/atomic"
)

// Crypto workers. One receive loop and one device loop would use at most two cores for AEAD work,
// whatever the machine has. When the shell gives a loop a pool (Run does; the engine entry points
// called directly have none and run exactly as before), a batch large enough to pay for the
// hand-off is processed fork-join: its AEAD work is cut into parts that the loop and the pool's
// helpers take one at a time, and once every part is done the loop delivers or sends the batch in
// its original order. Per-peer order, which TCP needs, is therefore the order of the batch, and no
// reorder queue is needed (wireguard-go keeps per-peer sequential queues instead, because its
// workers run across batches).
//
// The loop never waits for a helper to be scheduled: it takes parts itself, and waits only for
// parts a helper has already started, spinning rather than parking, since waking it again would
// cost as much as the parts. Helpers likewise spin a little before they park. What a hand-off
// still costs is the wake-up of a parked helper and the packets' bytes moving between the cores'
// caches, which is why small batches stay inline (minPartBytes), and why a machine of two cores,
// where the loops and the workload already share both, has no helpers by default (cryptoHelpers).

// workers are the helper goroutines of the node's loops. The receive loop and the device loop share
// them.
type workers struct {
	tasks   chan fanTask
	helpers int
	wg      sync.WaitGroup
}

// fanTask asks a helper to take parts of f's batch gen.
type fanTask struct {
	f   *fanout
	gen uint32
}

// startWorkers starts helpers goroutines; with none it returns nil (every batch is inline).
func startWorkers(helpers int) *workers {
	if helpers <= 0 {
		return nil
	}
	w := &workers{tasks: make(chan fanTask, 4*helpers), helpers: helpers}
	w.wg.Add(helpers)
	for range helpers {
		go w.run()
	}
	return w
}

// cryptoHelpers is how many helpers Options.CryptoWorkers asks for: the loops do AEAD work
// themselves, so k workers are k-1 helpers. By default there is a worker per core, except on a
// machine of two cores or fewer: there the receive and device loops can already keep both cores
// busy, and on the two-core machine of docs/performance.md ("All cores") a helper cost throughput.
func cryptoHelpers(workers int) int {
	if workers <= 0 {
		if workers = runtime.GOMAXPROCS(0); workers <= 2 {
			workers = 1
		}
	}
	return workers - 1
}

func (w *workers) run() {
	defer w.wg.Done()
	for t := range w.tasks {
		t.f.work(t.gen)
		for {
			next, ok := w.linger()
			if !ok {
				break
			}
			next.f.work(next.gen)
		}
	}
}

// spinYields bounds how long a goroutine spins before it parks: a helper that finished its parts,
// looking for the next batch, and a loop waiting for the parts helpers are finishing. Waking a parked
// goroutine on another core can cost more than a batch's parts (docs/performance.md, "All cores");
// 500 yields of an otherwise idle P take some tens of microseconds. Counted rather than timed: the
// loop runs engine code, which does not read the clock.
const spinYields = 500

// linger waits a little for a task without parking.
func (w *workers) linger() (fanTask, bool) {
	for range spinYields {
		select {
		case t, ok := <-w.tasks:
			return t, ok
		default:
		}
		runtime.Gosched()
	}
	return fanTask{}, false
}

// stop ends the helpers once no loop uses them any more.
func (w *workers) stop() {
	if w == nil {
		return
	}
	close(w.tasks)
	w.wg.Wait()
}

// fanout is one loop's fork-join over its batches: part(i) does the i-th part of the current batch.
// It belongs to the loop; helpers only call work.
type fanout struct {
	w    *workers
	part func(i int) // bound once, so that a batch allocates nothing
	gen  uint32      // the current batch, as the loop numbers them
	// state is gen<<32 | next<<16 | parts: the batch helpers may take parts of, the next part to
	// take and how many there are. A helper woken late for an earlier batch sees another gen and
	// takes nothing, so a part is never done twice.
	state atomic.Uint64
	// Parts of the current batch not finished: the loop spins on pending while a helper finishes
	// one, and waits on done only after spinYields. A helper marks done before pending, so that
	// pending at zero means that done is at zero too.
	pending atomic.Int32
	done    sync.WaitGroup
}

// maxParts bounds the parts of one batch (state holds counts in 16 bits).
const maxParts = 64

func newFanout(w *workers, part func(i int)) *fanout {
	return &fanout{w: w, part: part}
}

// helpers is how many goroutines can help this loop.
func (f *fanout) helpers() int {
	if f == nil || f.w == nil {
		return 0
	}
	return f.w.helpers
}

// run does parts parts of a batch and returns when all are done: with one part, or no helpers,
// inline.
func (f *fanout) run(parts int) {
	if parts <= 1 || f.helpers() == 0 {
		for i := range parts {
			f.part(i)
		}
		return
	}
	parts = min(parts, maxParts)
	f.gen++
	f.done.Add(parts)
	f.pending.Store(int32(parts))
	f.state.Store(uint64(f.gen)<<32 | uint64(parts))
	for range min(parts-1, f.w.helpers) {
		select {
		case f.w.tasks <- fanTask{f, f.gen}:
		default: // every helper has work queued; the loop does the parts itself
		}
	}
	f.work(f.gen)
	for range spinYields {
		if f.pending.Load() == 0 {
			return
		}
		runtime.Gosched()
	}
	f.done.Wait()
}

// work takes parts of batch gen until none is left.
func (f *fanout) work(gen uint32) {
	for {
		s := f.state.Load()
		next, parts := s>>16&0xffff, s&0xffff
		if uint32(s>>32) != gen || next >= parts {
			return
		}
		if !f.state.CompareAndSwap(s, s+1<<16) {
			continue
		}
		f.part(int(next))
		f.done.Done()
		f.pending.Add(-1)
	}
}

// cut divides items of the given weights into at most parts contiguous runs of about equal weight,
// writing each run's end into ends (at least parts long); it returns how many runs there are.
func cut(weights []int, parts int, ends []int) int {
	total := 0
	for _, w := range weights {
		total += w
	}
	per := (total + parts - 1) / max(parts, 1)
	runs, acc := 0, 0
	for i, w := range weights {
		acc += w
		if runs < parts-1 && acc >= per*(runs+1) && i+1 < len(weights) {
			ends[runs] = i + 1
			runs++
		}
	}
	ends[runs] = len(weights)
	return runs + 1
}

// minPartBytes is the least AEAD work, in bytes sealed or opened, worth a part of its own: about
// 24 full-sized packets, or 8 µs of AES-GCM here. A hand-off costs the wake-up of a helper and the
// packets' bytes moving between the cores' caches; batches cut finer than this lost to the loop
// alone (docs/performance.md, "All cores"). A batch is shared only from twice this size on.
var minPartBytes = 32 << 10

// partsPerWorker lets a helper that wakes late still find a part to take, without cutting a batch
// so fine that the parts cost more to hand out than they save.
const partsPerWorker = 2

// partsFor is how many parts a batch with total bytes of AEAD work is cut into: one (inline) unless
// every part gets at least minPartBytes.
func (f *fanout) partsFor(total int) int {
	return max(1, min(partsPerWorker*(f.helpers()+1), total/minPartBytes, maxParts))
}
