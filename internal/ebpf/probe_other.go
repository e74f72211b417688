//go:build !linux

package ebpf

import "errors"

// Probe is unavailable off Linux.
type Probe struct{}

// Open says that eBPF needs Linux.
func Open(Config) (*Probe, error) { return nil, errors.New("eBPF observation needs Linux") }

// Close does nothing.
func (p *Probe) Close() error { return nil }

// ProgramIDs is empty.
func (p *Probe) ProgramIDs() []uint32 { return nil }

// LinkIDs is empty.
func (p *Probe) LinkIDs() []uint32 { return nil }

// FlowCapacity is zero.
func (p *Probe) FlowCapacity() int { return 0 }

// Totals is never reached: Open fails.
func (p *Probe) Totals() (Totals, error) { return Totals{}, errors.New("eBPF observation needs Linux") }

// Drops is never reached: Open fails.
func (p *Probe) Drops() ([]Drop, error) { return nil, errors.New("eBPF observation needs Linux") }

// Snapshot is never reached: Open fails.
func (p *Probe) Snapshot() (Snapshot, error) {
	return Snapshot{}, errors.New("eBPF observation needs Linux")
}
