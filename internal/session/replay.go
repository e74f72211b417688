package session

// RFC 6479 replay window: a ring of ringWords 64-bit words. The effective window is one word
// smaller than the ring, because the word holding the newest counter is only partly in the past.
const (
	wordBitsLog = 6
	wordBits    = 1 << wordBitsLog
	ringWords   = 128 // 8192 bits
	wordMask    = ringWords - 1
	bitMask     = wordBits - 1

	// ReplayWindow is how far behind the newest accepted counter a packet may arrive and still
	// be accepted (if not seen before).
	ReplayWindow = (ringWords - 1) * wordBits // 8128
)

// replayFilter is not safe for concurrent use; keypair guards it with a mutex.
type replayFilter struct {
	last uint64 // highest counter accepted so far (meaningless while ring is all zero and last == 0)
	ring [ringWords]uint64
}

// check reports whether counter could be accepted; it does not change the filter.
func (f *replayFilter) check(counter uint64) bool {
	if counter >= RejectAfterMessages {
		return false
	}
	if counter > f.last {
		return true
	}
	if f.last-counter > ReplayWindow {
		return false
	}
	return f.ring[(counter>>wordBitsLog)&wordMask]&(1<<(counter&bitMask)) == 0
}

// update marks counter as accepted and reports whether it was acceptable (not seen, not too old).
// Call it only after the packet authenticated.
func (f *replayFilter) update(counter uint64) bool {
	if counter >= RejectAfterMessages {
		return false
	}
	block := counter >> wordBitsLog
	if counter > f.last {
		cur := f.last >> wordBitsLog
		diff := block - cur
		if diff > ringWords {
			diff = ringWords
		}
		for i := cur + 1; i <= cur+diff; i++ {
			f.ring[i&wordMask] = 0
		}
		f.last = counter
	} else if f.last-counter > ReplayWindow {
		return false
	}
	w := &f.ring[block&wordMask]
	bit := uint64(1) << (counter & bitMask)
	if *w&bit != 0 {
		return false
	}
	*w |= bit
	return true
}
