package control

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"x0tta6bl4/internal/control/store"
	"x0tta6bl4/internal/identity"
	"x0tta6bl4/internal/meshca"
)

// The signed revocation list lives in the database (store/crl.go), which every control-plane
// instance on it shares; each instance holds the newest list it has seen in memory, for the TLS
// handshake and the CRL long poll. The access policy follows the same path (refreshPolicy). An instance learns of another's list through PostgreSQL's
// NOTIFY within milliseconds, and through a poll every DefaultCRLPoll if a notification is lost.
const DefaultCRLPoll = 2 * time.Second

// crlHolder holds the current revocation list and wakes readers waiting for a newer one.
type crlHolder struct {
	mu      sync.RWMutex
	cur     *crlState
	changed chan struct{} // closed and replaced whenever the list changes
}

type crlState struct {
	list *meshca.RevocationList
	pem  []byte
}

// set installs l if it is newer than the list held (lists only move forward); it reports
// whether it did.
func (h *crlHolder) set(l *meshca.RevocationList) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.cur != nil && l.Number <= h.cur.list.Number {
		return false
	}
	h.cur = &crlState{list: l, pem: meshca.EncodeRevocationListPEM(l)}
	if h.changed != nil {
		close(h.changed)
	}
	h.changed = make(chan struct{})
	return true
}

func (h *crlHolder) get() *crlState {
	h.mu.RLock()
	defer h.mu.RUnlock()
	return h.cur
}

// wait returns the current list and a channel closed at the next change.
func (h *crlHolder) wait() (*crlState, <-chan struct{}) {
	h.mu.RLock()
	defer h.mu.RUnlock()
	return h.cur, h.changed
}

// wakeAll releases every waiter without changing the list (at shutdown).
func (h *crlHolder) wakeAll() {
	h.mu.Lock()
	defer h.mu.Unlock()
	close(h.changed)
	h.changed = make(chan struct{})
}

// parseStoredCRL decodes a stored list and checks that our CA signed it.
func (s *Server) parseStoredCRL(pem []byte) (*meshca.RevocationList, error) {
	l, err := meshca.DecodeRevocationListPEM(pem)
	if err != nil {
		return nil, fmt.Errorf("stored revocation list: %w", err)
	}
	if err := l.CheckSignature(s.caCert.SignPublicKey); err != nil {
		return nil, fmt.Errorf("stored revocation list %d: %w", l.Number, err)
	}
	return l, nil
}

// installCRL makes l the list served, if it is newer than the one held, and mirrors it to the CA
// directory, where `x0tta6bl4 ca crl` and file-based tools read it.
func (s *Server) installCRL(l *meshca.RevocationList) {
	if s.crl.set(l) {
		s.m.crlNumber.Set(float64(l.Number))
		if err := s.ca.StoreRevocationList(l); err != nil {
			s.log.Error("revocation list: mirror to the CA directory", "crl_number", l.Number, "err", err)
		}
	}
}

// initCRL reconciles the CA directory's list (which `x0tta6bl4 ca revoke` may have moved on
// offline) with the database's: the newer one is stored if missing, and served.
func (s *Server) initCRL(ctx context.Context, fromFile *meshca.RevocationList) error {
	n, pem, err := s.st.LatestRevocationList(ctx)
	switch {
	case errors.Is(err, store.ErrNotFound):
	case err != nil:
		return fmt.Errorf("control: %w", err)
	default:
		l, err := s.parseStoredCRL(pem)
		if err != nil {
			return fmt.Errorf("control: %w", err)
		}
		s.installCRL(l)
	}
	if fromFile.Number > n {
		err := s.st.InsertRevocationList(ctx, fromFile.Number, meshca.EncodeRevocationListPEM(fromFile), fromFile.IssuedAt)
		if err != nil && !errors.Is(err, store.ErrConflict) {
			return fmt.Errorf("control: %w", err)
		}
		return s.refreshCRL(ctx)
	}
	return nil
}

// refreshCRL serves the database's newest list if it is newer than the one held.
func (s *Server) refreshCRL(ctx context.Context) error {
	n, err := s.st.LatestRevocationListNumber(ctx)
	if err != nil || n <= s.crl.get().list.Number {
		return err
	}
	_, pem, err := s.st.LatestRevocationList(ctx)
	if err != nil {
		return err
	}
	l, err := s.parseStoredCRL(pem)
	if err != nil {
		return err
	}
	s.installCRL(l)
	return nil
}

// signRevocation signs, within tx, the successor of the newest stored list with serials and
// keys added, stores it and announces it at commit. The caller holds no lock: the transaction
// takes the database's signer lock, so instances sign one after another and never reuse a number.
func (s *Server) signRevocation(ctx context.Context, tx *store.Tx, serials []meshca.Serial, keys []identity.KeyID) (*meshca.RevocationList, error) {
	if err := tx.LockRevocationLists(ctx); err != nil {
		return nil, err
	}
	prev := s.crl.get().list
	if n, pem, err := tx.LatestRevocationList(ctx); err == nil {
		if n != prev.Number {
			if prev, err = s.parseStoredCRL(pem); err != nil {
				return nil, err
			}
		}
	} else if !errors.Is(err, store.ErrNotFound) {
		return nil, err
	}
	next, err := s.ca.CA().SignRevocationList(prev, serials, keys, s.now())
	if err != nil {
		return nil, fmt.Errorf("sign revocation list: %w", err)
	}
	if err := tx.InsertRevocationList(ctx, next.Number, meshca.EncodeRevocationListPEM(next), next.IssuedAt); err != nil {
		return nil, err
	}
	if err := tx.NotifyRevocationList(ctx, next.Number); err != nil {
		return nil, err
	}
	return next, nil
}

// watchCRL keeps the served list current with the database until ctx ends: through
// notifications where the database has them, and a poll always.
func (s *Server) watchCRL(ctx context.Context) {
	var wg sync.WaitGroup
	defer wg.Wait()
	kick := make(chan struct{}, 1)
	wg.Add(1)
	go func() {
		defer wg.Done()
		backoff := time.Duration(0)
		for ctx.Err() == nil {
			err := s.st.ListenRevocationLists(ctx, func(n uint64) {
				backoff = 0
				if n == 0 || n > s.crl.get().list.Number {
					select {
					case kick <- struct{}{}:
					default:
					}
				}
			})
			if errors.Is(err, store.ErrNoNotifications) || ctx.Err() != nil {
				return
			}
			s.log.Warn("revocation list notifications interrupted; polling meanwhile", "err", err)
			backoff = min(max(2*backoff, 100*time.Millisecond), 10*time.Second)
			select {
			case <-ctx.Done():
			case <-time.After(backoff):
			}
		}
	}()
	poll := time.NewTicker(s.crlPoll)
	defer poll.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-kick:
		case <-poll.C:
		}
		before := s.crl.get().list.Number
		if err := s.refreshCRL(ctx); err != nil && ctx.Err() == nil {
			s.log.Error("revocation list refresh failed", "err", err)
		} else if after := s.crl.get().list.Number; after != before {
			s.log.Info("revocation list updated from the database", "crl_number", after)
		}
		if err := s.refreshPolicy(ctx); err != nil && ctx.Err() == nil {
			s.log.Error("access policy refresh failed", "err", err)
		}
		if err := s.refreshRecordGeneration(ctx); err != nil && ctx.Err() == nil {
			s.log.Error("mesh record generation refresh failed", "err", err)
		}
	}
}
