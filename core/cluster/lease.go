package cluster

import (
	"context"
	"encoding/json"
	"sort"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/cairnbackup/cairn/core/cluster/clusterpb"
	"github.com/cairnbackup/cairn/sdk/locality"
	"github.com/cairnbackup/cairn/sdk/locality/rules"
)

// LeaseSweepInterval is how often each node looks for ranges whose
// leaseholder is no longer live.
var LeaseSweepInterval = time.Second

// leaseLoop moves the leases of dead nodes to live replicas until ctx
// ends. Every live node runs it; the descriptor update is a compare-and-
// swap, so one node wins each move.
func (n *Node) leaseLoop(ctx context.Context, done chan<- struct{}) {
	defer close(done)
	t := time.NewTicker(LeaseSweepInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if _, err := n.TransferDeadLeases(ctx); err != nil && ctx.Err() == nil {
			n.Logger.Warn("moving leases of dead nodes", "err", err)
		}
	}
}

// TransferDeadLeases moves the lease of every range whose leaseholder is
// not live to a live replica: the one with the most locality tiers in
// common with the old leaseholder (so a city's lease stays in its region
// when it can), then the lowest id. Before the descriptor names it, the
// new leaseholder closes the current time, so it never accepts a write at
// or below a timestamp its predecessor may have closed. It returns how
// many leases it moved.
func (n *Node) TransferDeadLeases(ctx context.Context) (int, error) {
	live, err := n.Meta.LiveNodes(ctx)
	if err != nil {
		return 0, err
	}
	resp, err := n.Meta.cli.Get(ctx, rangesPrefix, clientv3.WithPrefix())
	if err != nil {
		return 0, err
	}
	var nodes map[int32]locality.Locality
	moved := 0
	for _, kv := range resp.Kvs {
		var rd RangeDesc
		if err := json.Unmarshal(kv.Value, &rd); err != nil {
			continue
		}
		if live[rd.Leaseholder] {
			continue
		}
		if nodes == nil {
			nodes = map[int32]locality.Locality{}
			all, err := n.Meta.Nodes(ctx)
			if err != nil {
				return moved, err
			}
			for _, nd := range all {
				nodes[nd.ID], _ = locality.Parse(nd.Locality)
			}
		}
		var cands []int32
		for _, id := range rd.Replicas {
			if live[id] {
				cands = append(cands, id)
			}
		}
		if len(cands) == 0 {
			continue // no live replica: the range is unavailable
		}
		old := nodes[rd.Leaseholder]
		sort.Slice(cands, func(i, j int) bool {
			a, b := rules.TiersInCommon(nodes[cands[i]], old), rules.TiersInCommon(nodes[cands[j]], old)
			if a != b {
				return a > b
			}
			return cands[i] < cands[j]
		})
		next := cands[0]
		cl, err := n.NodeClient(ctx, next)
		if err != nil {
			continue
		}
		if _, err := cl.Close(ctx, &clusterpb.CloseRequest{Ts: TSToPB(n.Clock.Now())}); err != nil {
			continue
		}
		prev := rd.Leaseholder
		rd.Leaseholder = next
		b, _ := json.Marshal(rd)
		txn, err := n.Meta.cli.Txn(ctx).
			If(clientv3.Compare(clientv3.ModRevision(string(kv.Key)), "=", kv.ModRevision)).
			Then(clientv3.OpPut(string(kv.Key), string(b))).Commit()
		if err != nil {
			return moved, err
		}
		if txn.Succeeded {
			moved++
			n.Logger.Info("moved lease of a dead node", "range", rd.RangeID, "from", prev, "to", next)
		}
	}
	if moved > 0 {
		n.ranges.invalidate()
	}
	return moved, nil
}
