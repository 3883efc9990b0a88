package backup

import (
	"context"
	"errors"
	"fmt"

	"github.com/libp2p/go-libp2p/core/network"

	"erg"
)

// Holder is what serves friends' backups kept here, or nil.
func (s *Service) Holder() *Holder { return s.holder }

// ServeStream answers a friend's request on Protocol.
func (s *Service) ServeStream(st network.Stream) {
	if s.holder == nil {
		st.Reset()
		return
	}
	s.holder.Serve(st)
}

// Offers lists the space offered to friends, by friend name.
func (s *Service) Offers(ctx context.Context) ([]erg.BackupOffer, error) {
	out := []erg.BackupOffer{}
	if s.holder == nil {
		return out, nil
	}
	os, err := s.holder.Offers(ctx)
	if err != nil {
		return nil, err
	}
	for _, o := range os {
		name := o.Peer
		if s.cfg.FriendName != nil {
			name = s.cfg.FriendName(ctx, o.Peer)
		}
		out = append(out, erg.BackupOffer{Friend: name, Peer: o.Peer, Quota: o.Quota, Used: o.Used, Modified: o.Modified})
	}
	return out, nil
}

// OfferSpace lets a friend (by name) keep up to bytes of backups here.
func (s *Service) OfferSpace(ctx context.Context, who erg.User, friend string, bytes int64) error {
	if !who.Owner {
		return fmt.Errorf("%w: only the node's owner can offer space", erg.ErrForbidden)
	}
	if s.holder == nil || s.cfg.FriendPeer == nil {
		return fmt.Errorf("%w: this node keeps no friends' backups", erg.ErrUnavailable)
	}
	p, err := s.cfg.FriendPeer(ctx, friend)
	if err != nil {
		return err
	}
	return s.holder.Offer(ctx, p, bytes)
}

// WithdrawSpace ends an offer to a friend and deletes what it kept.
func (s *Service) WithdrawSpace(ctx context.Context, who erg.User, friend string) error {
	if !who.Owner {
		return fmt.Errorf("%w: only the node's owner can withdraw space", erg.ErrForbidden)
	}
	if s.holder == nil || s.cfg.FriendPeer == nil {
		return fmt.Errorf("%w: this node keeps no friends' backups", erg.ErrUnavailable)
	}
	p, err := s.cfg.FriendPeer(ctx, friend)
	if err != nil {
		return err
	}
	return s.holder.Withdraw(ctx, p)
}

// FriendGone ends the offer to a friend who is no longer one (either
// side ended it) and deletes what it kept: space is offered to friends.
func (s *Service) FriendGone(ctx context.Context, friendPeer string) {
	if s.holder == nil {
		return
	}
	if err := s.holder.Withdraw(ctx, friendPeer); err == nil {
		s.log.Info("offer ended with the friendship", "peer", friendPeer)
	} else if !errors.Is(err, erg.ErrNotFound) {
		s.log.Warn("end the offer to a former friend", "peer", friendPeer, "err", err)
	}
}
