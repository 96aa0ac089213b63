package cluster

import (
	"context"
	"fmt"
	"time"

	"github.com/cairnbackup/cairn/core/hlc"
	"github.com/cairnbackup/cairn/core/mvcc"
)

// GCThreshold returns the threshold below which a GC run with ttl may
// remove versions: the clock's now minus ttl (now itself for ttl <= 0).
// The result is zero, removing nothing, when ttl reaches back before the
// epoch.
func (n *Node) GCThreshold(ttl time.Duration) hlc.Timestamp {
	now := n.Clock.Now()
	if ttl <= 0 {
		return now
	}
	wall := now.WallTime - int64(ttl)
	if wall <= 0 {
		return hlc.Timestamp{}
	}
	return hlc.Timestamp{WallTime: wall}
}

// RunGC garbage-collects every range this node holds a replica of (see
// mvcc.Store.GC), keeping what reads at or above now − ttl see and, in
// each span a protected timestamp record covers, what reads at the
// record's timestamp see: it never GCs above a protection. It reads the
// range descriptors and the records once, at the start, and returns the
// totals; on error it returns what it removed so far.
func (n *Node) RunGC(ctx context.Context, ttl time.Duration) (mvcc.GCStats, error) {
	var total mvcc.GCStats
	base := n.GCThreshold(ttl)
	if base.IsEmpty() {
		return total, nil
	}
	rds, err := n.Meta.Ranges(ctx)
	if err != nil {
		return total, fmt.Errorf("collecting garbage on node %d: reading range descriptors: %w", n.ID, err)
	}
	recs, err := n.Meta.ProtectedTimestamps(ctx)
	if err != nil {
		return total, fmt.Errorf("collecting garbage on node %d: %w", n.ID, err)
	}
	for _, rd := range rds {
		if !holdsReplica(rd, n.ID) {
			continue
		}
		for _, p := range gcThresholds(rd.Span(), base, recs) {
			st, err := n.Store.GC(ctx, p.span, p.threshold)
			total = total.Add(st)
			if err != nil {
				return total, fmt.Errorf("collecting garbage on node %d, range %d: %w", n.ID, rd.RangeID, err)
			}
		}
	}
	n.Logger.Info("garbage collected", "threshold", base, "ranges", len(rds), "protections", len(recs),
		"versions_deleted", total.Deleted, "bytes_deleted", total.DeletedBytes)
	return total, nil
}

func holdsReplica(rd RangeDesc, id int32) bool {
	for _, r := range rd.Replicas {
		if r == id {
			return true
		}
	}
	return false
}

// startGC runs RunGC every interval with ttl until ctx ends; done is
// closed when it has stopped. A failed run is logged and retried at the
// next tick.
func (n *Node) startGC(ctx context.Context, interval, ttl time.Duration, done chan<- struct{}) {
	defer close(done)
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if _, err := n.RunGC(ctx, ttl); err != nil && ctx.Err() == nil {
			n.Logger.Warn("garbage collection", "err", err)
		}
	}
}
