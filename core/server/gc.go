package server

import (
	"context"
	"time"

	"github.com/cairnbackup/cairn/core/mvcc"
)

// RunGC garbage-collects every node's replicas once, keeping what reads at
// or above now − ttl see and whatever protected timestamps hold (see
// cluster.Node.RunGC), and returns the totals. It stops at the first
// node's error, returning what was removed until then.
func (s *Server) RunGC(ctx context.Context, ttl time.Duration) (mvcc.GCStats, error) {
	var total mvcc.GCStats
	for _, n := range s.Nodes {
		st, err := n.Node.RunGC(ctx, ttl)
		total = total.Add(st)
		if err != nil {
			return total, err
		}
	}
	return total, nil
}
