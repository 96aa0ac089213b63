package server

import (
	"context"
	"fmt"
	"sort"
	"strconv"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/cairnbackup/cairn/core/cluster"
	"github.com/cairnbackup/cairn/core/hlc"
	"github.com/cairnbackup/cairn/core/jobs"
	"github.com/cairnbackup/cairn/core/server/serverpb"
	"github.com/cairnbackup/cairn/core/sql"
	"github.com/cairnbackup/cairn/core/workload/movr"
)

// gateway answers serverpb.Gateway on a node: the CLI's --host sends its
// statements, workload and fingerprint requests here, and they run with
// this node as the gateway.
type gateway struct {
	serverpb.UnimplementedGatewayServer
	nd *Node
}

// ready returns the node once StartNode has finished wiring it; requests
// that arrive while it starts get Unavailable.
func (g *gateway) ready() (*Node, error) {
	if g.nd.Server == nil {
		return nil, status.Error(codes.Unavailable, "node is starting")
	}
	return g.nd, nil
}

func resultToPB(r *Result) *serverpb.Result {
	if r == nil {
		return nil
	}
	out := &serverpb.Result{Columns: r.Columns, JobId: r.JobID}
	for _, row := range r.Rows {
		out.Rows = append(out.Rows, &serverpb.Row{Values: row})
	}
	return out
}

func resultFromPB(r *serverpb.Result) *Result {
	if r == nil {
		return nil
	}
	out := &Result{Columns: r.Columns, JobID: r.JobId}
	for _, row := range r.Rows {
		out.Rows = append(out.Rows, row.Values)
	}
	return out
}

func (g *gateway) Exec(req *serverpb.ExecRequest, stream serverpb.Gateway_ExecServer) error {
	nd, err := g.ready()
	if err != nil {
		return err
	}
	st, err := sql.Parse(req.Statement)
	if err != nil {
		return status.Error(codes.InvalidArgument, err.Error())
	}
	// Progress is sent from the job's watcher; a failed send only loses
	// an update, the result still follows.
	opts := ExecOptions{User: req.User, OnProgress: func(r jobs.Record) {
		stream.Send(&serverpb.ExecResponse{Progress: &serverpb.JobProgress{JobId: r.ID, State: string(r.State), Fraction: r.Fraction}})
	}}
	res, err := nd.ExecStatement(stream.Context(), st, opts)
	if res == nil && err != nil {
		return status.Error(codes.Unknown, err.Error())
	}
	resp := &serverpb.ExecResponse{Result: resultToPB(res)}
	if err != nil {
		resp.Error = err.Error()
	}
	return stream.Send(resp)
}

func (g *gateway) Workload(req *serverpb.WorkloadRequest, stream serverpb.Gateway_WorkloadServer) error {
	nd, err := g.ready()
	if err != nil {
		return err
	}
	ctx := stream.Context()
	db := req.Database
	if db == "" {
		db = "movr"
	}
	kv := KV{Node: nd.Runtime.Node}
	switch req.Op {
	case "init":
		cfg := movr.Config{Seed: req.Seed, Bytes: req.Bytes, Rows: int(req.Rows), Concurrency: 4, BatchSize: 200}
		if cfg.Bytes <= 0 && cfg.Rows <= 0 {
			return status.Error(codes.InvalidArgument, "workload init: give bytes or rows")
		}
		ids, err := nd.CreateMovr(ctx, db)
		if err != nil {
			return err
		}
		last := time.Now()
		stats, err := movr.Load(ctx, kv, ids, cfg, func(done int64) {
			if time.Since(last) > 200*time.Millisecond {
				last = time.Now()
				stream.Send(&serverpb.WorkloadResponse{BytesDone: done})
			}
		})
		if err != nil {
			return err
		}
		return stream.Send(&serverpb.WorkloadResponse{Done: true, Rows: stats.Rows, Bytes: stats.Bytes})
	case "run":
		ids, err := nd.TableIDs(ctx, db)
		if err != nil {
			return err
		}
		if req.DurationNanos > 0 {
			var cancel context.CancelFunc
			ctx, cancel = context.WithTimeout(ctx, time.Duration(req.DurationNanos))
			defer cancel()
		}
		st, err := movr.Run(ctx, kv, ids, movr.RunConfig{Seed: req.Seed, Concurrency: 2, MaxOpsPerSecond: req.MaxOpsPerSecond})
		if err != nil {
			return err
		}
		return stream.Send(&serverpb.WorkloadResponse{Done: true, Ops: st.Ops()})
	}
	return status.Errorf(codes.InvalidArgument, "unknown workload operation %q: want init or run", req.Op)
}

func (g *gateway) Fingerprint(ctx context.Context, req *serverpb.FingerprintRequest) (*serverpb.FingerprintResponse, error) {
	nd, err := g.ready()
	if err != nil {
		return nil, err
	}
	ts := hlc.Timestamp{WallTime: req.WallTime, Logical: req.Logical}
	if ts.IsEmpty() {
		ts = nd.Runtime.Node.Clock.Now()
	}
	fp, err := nd.Fingerprint(ctx, req.Database, ts)
	if err != nil {
		return nil, err
	}
	return &serverpb.FingerprintResponse{Hex: fp.Hex(), Rows: fp.Rows, WallTime: ts.WallTime, Logical: ts.Logical}, nil
}

func (g *gateway) Status(ctx context.Context, _ *serverpb.StatusRequest) (*serverpb.StatusResponse, error) {
	nd, err := g.ready()
	if err != nil {
		return nil, err
	}
	return clusterStatus(ctx, nd)
}

func clusterStatus(ctx context.Context, nd *Node) (*serverpb.StatusResponse, error) {
	meta := nd.Runtime.Node.Meta
	nodes, err := meta.Nodes(ctx)
	if err != nil {
		return nil, err
	}
	live, err := meta.LiveNodes(ctx)
	if err != nil {
		return nil, err
	}
	recs, err := nd.Runtime.Registry.List(ctx)
	if err != nil {
		return nil, err
	}
	byNode := map[int32][]int64{}
	for _, r := range recs {
		if r.ClaimNode != 0 && !r.State.Terminal() && live[r.ClaimNode] {
			byNode[r.ClaimNode] = append(byNode[r.ClaimNode], r.ID)
		}
	}
	draining, err := prefixIDs(ctx, nd, cluster.Prefix+"draining/")
	if err != nil {
		return nil, err
	}
	https, err := prefixIDs(ctx, nd, cluster.Prefix+"http/")
	if err != nil {
		return nil, err
	}
	resp := &serverpb.StatusResponse{EtcdEndpoints: nd.etcdCli.Endpoints()}
	for _, n := range nodes {
		resp.Nodes = append(resp.Nodes, &serverpb.NodeStatus{
			Id: n.ID, Address: n.Addr, Locality: n.Locality, Live: live[n.ID],
			Draining: draining[n.ID] != "", RunningJobs: byNode[n.ID], HttpAddress: https[n.ID],
		})
	}
	sort.Slice(resp.Nodes, func(i, j int) bool { return resp.Nodes[i].Id < resp.Nodes[j].Id })
	return resp, nil
}

// prefixIDs reads the keys under prefix whose last part is a node id.
func prefixIDs(ctx context.Context, nd *Node, prefix string) (map[int32]string, error) {
	resp, err := nd.etcdCli.Get(ctx, prefix, clientv3.WithPrefix())
	if err != nil {
		return nil, fmt.Errorf("reading %s: %w", prefix, err)
	}
	out := map[int32]string{}
	for _, kv := range resp.Kvs {
		id, err := strconv.ParseInt(string(kv.Key[len(prefix):]), 10, 32)
		if err == nil {
			out[int32(id)] = string(kv.Value)
		}
	}
	return out, nil
}

func (g *gateway) Drain(ctx context.Context, _ *serverpb.DrainRequest) (*serverpb.DrainResponse, error) {
	nd, err := g.ready()
	if err != nil {
		return nil, err
	}
	ids, err := nd.Drain(ctx)
	if err != nil {
		return nil, err
	}
	return &serverpb.DrainResponse{HandedOver: ids}, nil
}
