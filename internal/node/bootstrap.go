package node

import (
	"errors"
	"fmt"
)

// SignedRecord is a node's link-state record with its mesh certificate, both encoded: what a control
// plane stores from a node's report and hands to the nodes that may reach it.
type SignedRecord struct {
	Cert   []byte
	Record []byte
}

// OwnRecord returns the node's latest signed record and certificate (zero before its first record,
// which it signs once a link is up).
func (n *Node) OwnRecord() SignedRecord {
	n.mu.Lock()
	defer n.mu.Unlock()
	cert, rec := n.router.Own()
	return SignedRecord{Cert: cert, Record: rec}
}

// Announce signs the node's own link-state record now, with its endpoints, even before it has a
// link: for a control plane to hand to nodes that have no other way to find this one (a mesh of
// nodes that all joined through the control plane, none with a configured peer).
func (n *Node) Announce() {
	now := n.now()
	n.mu.Lock()
	defer n.mu.Unlock()
	n.publishEndpointsLocked(now)
	n.router.Announce()
	n.router.Tick(now)
	n.flushRoutingLocked(now)
}

// LearnRecords installs records from outside the mesh (a control plane's answer). Each is verified
// as a flooded record is, so a control plane can neither forge nor roll back what the node knows;
// the ones that are not newer than what the node holds are ignored. It returns the errors of the
// records that were refused, joined.
func (n *Node) LearnRecords(recs []SignedRecord) error {
	now := n.now()
	n.mu.Lock()
	defer n.mu.Unlock()
	var errs []error
	for i, r := range recs {
		if err := n.router.Learn(now, r.Cert, r.Record); err != nil {
			errs = append(errs, fmt.Errorf("record %d: %w", i, err))
		}
	}
	n.flushRoutingLocked(now)
	return errors.Join(errs...)
}
