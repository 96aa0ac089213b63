// Package cluster is cairn's reference cluster: nodes that each keep an
// MVCC store in Pebble, ranges with replicas and leaseholders, a catalog,
// and a control plane in etcd. It is the source cairn backs up out of the
// box and the one every end-to-end test runs against. It is not a
// database: no SQL, no transactions, no Raft for data.
//
// Node-to-node traffic (writes, replication, reads, export, ingest) always
// goes through the gRPC service in clusterpb, even when every node runs in
// one process, so one node per process changes only how nodes start.
package cluster

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"sort"
	"sync"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/client/v3/concurrency"
	"google.golang.org/grpc"
	"google.golang.org/grpc/backoff"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/cairnbackup/cairn/core/cluster/clusterpb"
	"github.com/cairnbackup/cairn/core/hlc"
	"github.com/cairnbackup/cairn/core/mvcc"
	"github.com/cairnbackup/cairn/core/spans"
	"github.com/cairnbackup/cairn/sdk/locality"
)

// Config configures one node.
type Config struct {
	ID       int32
	Locality string
	// StoreDir holds the node's Pebble store; ExternalIODir is the root of
	// nodelocal://<id>/; AuxDir holds temporary files (ingest staging).
	StoreDir, ExternalIODir, AuxDir string
	// ListenAddr defaults to 127.0.0.1:0.
	ListenAddr string
	Etcd       *clientv3.Client
	Logger     *slog.Logger
	// CacheSize is the Pebble block cache in bytes.
	CacheSize int64
	// LivenessTTL is the liveness session's lease TTL in seconds (default 5).
	LivenessTTL int
	// Services registers extra gRPC services (backup and restore
	// processors) on the node's server before it starts serving.
	Services func(s *grpc.Server, n *Node)
	// GCInterval and GCTTL run RunGC(GCTTL) every GCInterval while the
	// node runs; garbage collection is off unless both are positive.
	GCInterval, GCTTL time.Duration
	// ServerCreds and ClientCreds secure node-to-node gRPC (see
	// LoadTLS); nil means plaintext (--insecure).
	ServerCreds, ClientCreds credentials.TransportCredentials
	// ServerOptions are extra options of the node's gRPC server
	// (interceptors).
	ServerOptions []grpc.ServerOption
}

// Node is one member of the reference cluster.
type Node struct {
	ID       int32
	Locality locality.Locality
	Clock    *hlc.Clock
	Store    *mvcc.Store
	Meta     *Meta
	Session  *concurrency.Session
	Logger   *slog.Logger

	cfg    Config
	lis    net.Listener
	server *grpc.Server
	ranges *rangeCache

	mu       sync.Mutex
	cond     *sync.Cond
	closed   hlc.Timestamp
	inflight map[hlc.Timestamp]int

	connMu sync.Mutex
	conns  map[int32]*nodeConn

	stopOnce sync.Once
	// gcStop ends the periodic GC runner and gcDone is closed once it has
	// stopped; both are nil when the runner is off.
	gcStop context.CancelFunc
	gcDone chan struct{}
	// leaseStop ends the loop that moves dead nodes' leases.
	leaseStop context.CancelFunc
	leaseDone chan struct{}
}

// Start opens the node's store, serves its gRPC API and registers it in
// etcd with a liveness session.
func Start(ctx context.Context, cfg Config) (*Node, error) {
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	if cfg.ListenAddr == "" {
		cfg.ListenAddr = "127.0.0.1:0"
	}
	if cfg.LivenessTTL <= 0 {
		cfg.LivenessTTL = 5
	}
	loc, err := locality.Parse(cfg.Locality)
	if err != nil {
		return nil, err
	}
	for _, d := range []string{cfg.StoreDir, cfg.ExternalIODir, cfg.AuxDir} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return nil, fmt.Errorf("starting node %d: %w", cfg.ID, err)
		}
	}
	store, err := mvcc.Open(cfg.StoreDir, mvcc.Options{CacheSize: cfg.CacheSize, Logger: cfg.Logger})
	if err != nil {
		return nil, fmt.Errorf("starting node %d: opening store: %w", cfg.ID, err)
	}
	n := &Node{
		ID: cfg.ID, Locality: loc, Clock: hlc.NewClock(), Store: store,
		Meta: NewMeta(cfg.Etcd), Logger: cfg.Logger.With("node", cfg.ID), cfg: cfg,
		inflight: map[hlc.Timestamp]int{}, conns: map[int32]*nodeConn{},
	}
	n.cond = sync.NewCond(&n.mu)
	n.ranges = newRangeCache(n.Meta)
	lis, err := net.Listen("tcp", cfg.ListenAddr)
	if err != nil {
		store.Close()
		return nil, fmt.Errorf("starting node %d: listening: %w", cfg.ID, err)
	}
	n.lis = lis
	sopts := append([]grpc.ServerOption{grpc.MaxRecvMsgSize(16 << 20)}, cfg.ServerOptions...)
	if cfg.ServerCreds != nil {
		sopts = append(sopts, grpc.Creds(cfg.ServerCreds))
	}
	n.server = grpc.NewServer(sopts...)
	clusterpb.RegisterNodeServer(n.server, &nodeServer{n: n})
	if cfg.Services != nil {
		cfg.Services(n.server, n)
	}
	go n.server.Serve(lis)

	sess, err := concurrency.NewSession(cfg.Etcd, concurrency.WithTTL(cfg.LivenessTTL), concurrency.WithContext(context.WithoutCancel(ctx)))
	if err != nil {
		n.Stop()
		return nil, fmt.Errorf("starting node %d: liveness session: %w", cfg.ID, err)
	}
	n.Session = sess
	if err := n.Meta.PutNode(ctx, NodeDesc{ID: cfg.ID, Addr: lis.Addr().String(), Locality: cfg.Locality, ExternalIODir: cfg.ExternalIODir}); err != nil {
		n.Stop()
		return nil, err
	}
	if _, err := cfg.Etcd.Put(ctx, livenessKey(cfg.ID), lis.Addr().String(), clientv3.WithLease(sess.Lease())); err != nil {
		n.Stop()
		return nil, fmt.Errorf("starting node %d: recording liveness: %w", cfg.ID, err)
	}
	leaseCtx, leaseStop := context.WithCancel(context.WithoutCancel(ctx))
	n.leaseStop, n.leaseDone = leaseStop, make(chan struct{})
	go n.leaseLoop(leaseCtx, n.leaseDone)
	if cfg.GCInterval > 0 && cfg.GCTTL > 0 {
		gcCtx, stop := context.WithCancel(context.WithoutCancel(ctx))
		n.gcStop, n.gcDone = stop, make(chan struct{})
		go n.startGC(gcCtx, cfg.GCInterval, cfg.GCTTL, n.gcDone)
	}
	return n, nil
}

// Addr is the node's gRPC address.
func (n *Node) Addr() string { return n.lis.Addr().String() }

// ExternalIODir is the root of this node's nodelocal:// storage.
func (n *Node) ExternalIODir() string { return n.cfg.ExternalIODir }

// AuxDir is the node's scratch directory.
func (n *Node) AuxDir() string { return n.cfg.AuxDir }

// Stop shuts the node down: it ends its liveness session, stops serving and
// closes its store. Safe to call more than once.
func (n *Node) Stop() {
	n.stopOnce.Do(func() {
		if n.leaseStop != nil {
			n.leaseStop()
			<-n.leaseDone
		}
		if n.gcStop != nil {
			n.gcStop()
			<-n.gcDone // the runner uses the store
		}
		if n.Session != nil {
			n.Session.Close()
		}
		n.server.Stop()
		n.connMu.Lock()
		for _, c := range n.conns {
			c.cc.Close()
		}
		n.connMu.Unlock()
		n.Store.Close()
	})
}

// Client returns a client for node id's gRPC API.
func (n *Node) Conn(ctx context.Context, id int32) (*grpc.ClientConn, error) {
	n.connMu.Lock()
	c, ok := n.conns[id]
	n.connMu.Unlock()
	if ok && time.Since(c.checked) < connRecheck {
		return c.cc, nil
	}
	// A node that restarted listens somewhere else: look its address up
	// again now and then, and redial when it moved. The lookup runs
	// outside the lock, so one slow etcd read does not hold up every
	// other call of this node.
	nd, err := n.Meta.Node(ctx, id)
	if err != nil {
		if ok {
			return c.cc, nil
		}
		return nil, err
	}
	n.connMu.Lock()
	defer n.connMu.Unlock()
	c, ok = n.conns[id] // another caller may have redialled meanwhile
	if ok && c.addr == nd.Addr {
		c.checked = time.Now()
		return c.cc, nil
	}
	creds := n.cfg.ClientCreds
	if creds == nil {
		creds = insecure.NewCredentials()
	}
	cc, err := grpc.NewClient(nd.Addr, grpc.WithTransportCredentials(creds),
		grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(16<<20)), grpc.WithConnectParams(peerConnectParams))
	if err != nil {
		return nil, fmt.Errorf("dialing node %d at %s: %w", id, nd.Addr, err)
	}
	if ok {
		c.cc.Close() // the old address is gone
	}
	n.conns[id] = &nodeConn{cc: cc, addr: nd.Addr, checked: time.Now()}
	return cc, nil
}

// peerConnectParams bound how long a connection to a node that went away
// waits between attempts to reconnect. gRPC's default grows to two
// minutes, and while it waits every call fails at once with the last dial
// error: a node restarted on the same address would stay unreachable to
// its peers (closing timestamps, exports, writes) long after it serves,
// and a job retrying through it exhausts its retry budget.
var peerConnectParams = grpc.ConnectParams{
	Backoff:           backoff.Config{BaseDelay: 100 * time.Millisecond, Multiplier: 1.6, Jitter: 0.2, MaxDelay: time.Second},
	MinConnectTimeout: 5 * time.Second,
}

// connRecheck is how long a connection is used before its node's address
// is looked up again.
const connRecheck = 2 * time.Second

type nodeConn struct {
	cc      *grpc.ClientConn
	addr    string
	checked time.Time
}

// NodeClient returns the KV client of node id.
func (n *Node) NodeClient(ctx context.Context, id int32) (clusterpb.NodeClient, error) {
	c, err := n.Conn(ctx, id)
	if err != nil {
		return nil, err
	}
	return clusterpb.NewNodeClient(c), nil
}

// Ranges returns the ranges overlapping span, in key order.
func (n *Node) Ranges(ctx context.Context, span spans.Span) ([]RangeDesc, error) {
	return n.ranges.overlapping(ctx, span)
}

// InvalidateRanges drops the node's cached range descriptors.
func (n *Node) InvalidateRanges() { n.ranges.invalidate() }

// Op is one write of a batch.
type Op struct {
	Key, Value []byte
	Delete     bool
}

// Write applies ops through the leaseholders of their ranges, at a
// timestamp from this node's clock, and returns once every replica has
// them. Ops of different ranges are not atomic together.
func (n *Node) Write(ctx context.Context, ops []Op) error {
	if len(ops) == 0 {
		return nil
	}
	type group struct {
		rd  RangeDesc
		ops []*clusterpb.KVOp
	}
	groups := map[int64]*group{}
	var order []int64
	for _, op := range ops {
		rd, err := n.ranges.lookup(ctx, op.Key)
		if err != nil {
			return fmt.Errorf("writing %q: %w", op.Key, err)
		}
		g, ok := groups[rd.RangeID]
		if !ok {
			g = &group{rd: rd}
			groups[rd.RangeID] = g
			order = append(order, rd.RangeID)
		}
		g.ops = append(g.ops, &clusterpb.KVOp{Key: op.Key, Value: op.Value, Delete: op.Delete})
	}
	for _, id := range order {
		g := groups[id]
		if err := n.writeRange(ctx, g.rd, g.ops); err != nil {
			return err
		}
	}
	return nil
}

func (n *Node) writeRange(ctx context.Context, rd RangeDesc, ops []*clusterpb.KVOp) error {
	var lastErr error
	backoff := 20 * time.Millisecond
	for attempt := 0; ; attempt++ {
		err := n.writeRangeOnce(ctx, rd, ops)
		if err == nil {
			return nil
		}
		lastErr = err
		// The leaseholder may be gone: its lease moves to a live replica
		// once its liveness expires. Reload the descriptor and try again,
		// for about twice a liveness TTL.
		if ctx.Err() != nil || attempt >= 40 {
			return lastErr
		}
		select {
		case <-ctx.Done():
			return lastErr
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, 500*time.Millisecond)
		n.ranges.invalidate()
		fresh, lerr := n.ranges.byID(ctx, rd.RangeID)
		if lerr != nil {
			return fmt.Errorf("%w (and reloading range %d: %v)", lastErr, rd.RangeID, lerr)
		}
		rd = fresh
	}
}

func (n *Node) writeRangeOnce(ctx context.Context, rd RangeDesc, ops []*clusterpb.KVOp) error {
	cl, err := n.NodeClient(ctx, rd.Leaseholder)
	if err != nil {
		return err
	}
	for attempt := 0; ; attempt++ {
		ts := n.Clock.Now()
		resp, err := cl.Write(ctx, &clusterpb.WriteRequest{RangeId: rd.RangeID, Ts: TSToPB(ts), Ops: ops})
		if err != nil {
			return fmt.Errorf("writing to range %d on node %d: %w", rd.RangeID, rd.Leaseholder, err)
		}
		if resp.RetryAfter == nil {
			return nil
		}
		n.Clock.Update(TSFromPB(resp.RetryAfter))
		if attempt > 100 {
			return fmt.Errorf("writing to range %d: timestamp kept closing under the write", rd.RangeID)
		}
	}
}

// CloseTimestamp makes ts closed on every leaseholder of the ranges
// overlapping span: afterwards no write at or below ts is accepted there,
// and every accepted one has reached all its replicas, so any replica reads
// ts completely.
func (n *Node) CloseTimestamp(ctx context.Context, span spans.Span, ts hlc.Timestamp) error {
	rds, err := n.Ranges(ctx, span)
	if err != nil {
		return err
	}
	return n.CloseOn(ctx, leaseholders(rds), ts)
}

// CloseOn closes ts on the given nodes.
func (n *Node) CloseOn(ctx context.Context, nodes []int32, ts hlc.Timestamp) error {
	n.Clock.Update(ts)
	for _, id := range nodes {
		cl, err := n.NodeClient(ctx, id)
		if err != nil {
			return err
		}
		if _, err := cl.Close(ctx, &clusterpb.CloseRequest{Ts: TSToPB(ts)}); err != nil {
			return fmt.Errorf("closing %s on node %d: %w", ts, id, err)
		}
	}
	return nil
}

func leaseholders(rds []RangeDesc) []int32 {
	seen := map[int32]bool{}
	var out []int32
	for _, r := range rds {
		if !seen[r.Leaseholder] {
			seen[r.Leaseholder] = true
			out = append(out, r.Leaseholder)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i] < out[j] })
	return out
}

// Scan calls fn for each visible row of span at ts, reading each range
// from its leaseholder after closing ts there.
func (n *Node) Scan(ctx context.Context, span spans.Span, ts hlc.Timestamp, fn func(key, value []byte) error) error {
	// Closing ts needs every leaseholder; one that died is replaced within
	// about a liveness TTL, so retry for a while before giving up.
	var rds []RangeDesc
	backoff := 50 * time.Millisecond
	for attempt := 0; ; attempt++ {
		var err error
		if rds, err = n.Ranges(ctx, span); err != nil {
			return err
		}
		if err = n.CloseOn(ctx, leaseholders(rds), ts); err == nil {
			break
		}
		if ctx.Err() != nil || attempt >= 30 {
			return err
		}
		select {
		case <-ctx.Done():
			return err
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, 500*time.Millisecond)
	}
	for _, rd := range rds {
		sub, ok := rd.Span().Intersect(span)
		if !ok {
			continue
		}
		cl, err := n.NodeClient(ctx, rd.Leaseholder)
		if err != nil {
			return err
		}
		stream, err := cl.Scan(ctx, &clusterpb.ScanRequest{Span: SpanToPB(sub), Ts: TSToPB(ts)})
		if err != nil {
			return err
		}
		for {
			resp, err := stream.Recv()
			if errors.Is(err, io.EOF) {
				break
			}
			if err != nil {
				return fmt.Errorf("scanning range %d on node %d: %w", rd.RangeID, rd.Leaseholder, err)
			}
			for _, r := range resp.Rows {
				if err := fn(r.Key, r.Value); err != nil {
					return err
				}
			}
		}
	}
	return nil
}

// ExportFrom exports one sstable of span from replica node `from` into w:
// directly from this node's store when from is this node, else streamed
// over gRPC.
func (n *Node) ExportFrom(ctx context.Context, from int32, opts mvcc.ExportOptions, w io.Writer) (mvcc.ExportSummary, error) {
	if from == n.ID {
		return n.Store.Export(ctx, opts, w)
	}
	cl, err := n.NodeClient(ctx, from)
	if err != nil {
		return mvcc.ExportSummary{}, err
	}
	stream, err := cl.Export(ctx, &clusterpb.ExportRequest{
		Span: SpanToPB(opts.Span), StartTs: TSToPB(opts.StartTS), EndTs: TSToPB(opts.EndTS),
		AllRevisions: opts.AllRevisions, TargetSize: opts.TargetSize,
	})
	if err != nil {
		return mvcc.ExportSummary{}, err
	}
	var written int64
	for {
		c, err := stream.Recv()
		if err != nil {
			if errors.Is(err, io.EOF) {
				err = io.ErrUnexpectedEOF
			}
			return mvcc.ExportSummary{}, fmt.Errorf("exporting from node %d: %w", from, err)
		}
		if len(c.Data) > 0 {
			if _, err := w.Write(c.Data); err != nil {
				return mvcc.ExportSummary{}, err
			}
			written += int64(len(c.Data))
		}
		if s := c.Summary; s != nil {
			// The wire summary carries no key or time bounds (FirstKey,
			// LastKey, MinTS, MaxTS stay zero); FileBytes is what arrived.
			return mvcc.ExportSummary{Entries: s.Entries, LogicalBytes: s.LogicalBytes, ResumeKey: s.ResumeKey, FileBytes: written}, nil
		}
	}
}

// IngestTo sends one sstable read from r to replica node `to`, which
// ingests it into its store.
func (n *Node) IngestTo(ctx context.Context, to int32, rangeID int64, r io.Reader) error {
	if to == n.ID {
		return n.ingestLocal(ctx, r)
	}
	cl, err := n.NodeClient(ctx, to)
	if err != nil {
		return err
	}
	// Cancelling the stream, not ending it, is how a failed source aborts
	// the ingest: an ended stream would have the replica ingest a
	// truncated file.
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stream, err := cl.Ingest(ctx)
	if err != nil {
		return err
	}
	if err := stream.Send(&clusterpb.IngestChunk{RangeId: rangeID}); err != nil {
		return err
	}
	buf := make([]byte, 1<<20)
	for {
		k, rerr := r.Read(buf)
		if k > 0 {
			if err := stream.Send(&clusterpb.IngestChunk{Data: buf[:k]}); err != nil {
				_, err2 := stream.CloseAndRecv()
				return fmt.Errorf("ingesting on node %d: %w", to, errors.Join(err, err2))
			}
		}
		if errors.Is(rerr, io.EOF) {
			break
		}
		if rerr != nil {
			cancel()
			return fmt.Errorf("ingesting on node %d: reading sstable: %w", to, rerr)
		}
	}
	if _, err := stream.CloseAndRecv(); err != nil {
		return fmt.Errorf("ingesting on node %d: %w", to, err)
	}
	return nil
}

func (n *Node) ingestLocal(ctx context.Context, r io.Reader) error {
	f, err := os.CreateTemp(n.cfg.AuxDir, "ingest-*.sst")
	if err != nil {
		return err
	}
	path := f.Name()
	defer os.Remove(path)
	if _, err := io.Copy(f, r); err != nil {
		f.Close()
		return fmt.Errorf("staging sstable for ingest: %w", err)
	}
	if err := f.Close(); err != nil {
		return err
	}
	return n.Store.Ingest(ctx, []string{path})
}

// ClearSpanOn deletes span's data on the given nodes.
func (n *Node) ClearSpanOn(ctx context.Context, nodes []int32, span spans.Span) error {
	for _, id := range nodes {
		cl, err := n.NodeClient(ctx, id)
		if err != nil {
			return err
		}
		if _, err := cl.ClearSpan(ctx, &clusterpb.ClearRequest{Span: SpanToPB(span)}); err != nil {
			return fmt.Errorf("clearing %s on node %d: %w", span, id, err)
		}
	}
	return nil
}

// errIngestDone closes an ingest's pipe once staging has read all it will.
var errIngestDone = errors.New("ingest staging finished")

// nodeServer answers the clusterpb.Node service.
type nodeServer struct {
	clusterpb.UnimplementedNodeServer
	n *Node
}

func (s *nodeServer) Write(ctx context.Context, req *clusterpb.WriteRequest) (*clusterpb.WriteResponse, error) {
	n := s.n
	ts := TSFromPB(req.Ts)
	n.Clock.Update(ts)
	n.mu.Lock()
	if ts.LessEq(n.closed) {
		closed := n.closed
		n.mu.Unlock()
		return &clusterpb.WriteResponse{RetryAfter: TSToPB(closed)}, nil
	}
	n.inflight[ts]++
	n.mu.Unlock()
	defer func() {
		n.mu.Lock()
		if n.inflight[ts]--; n.inflight[ts] == 0 {
			delete(n.inflight, ts)
		}
		n.cond.Broadcast()
		n.mu.Unlock()
	}()
	// A node whose liveness session ended may have lost its leases to
	// other replicas: it must not accept writes any more.
	if n.Session != nil {
		select {
		case <-n.Session.Done():
			return nil, fmt.Errorf("writing to range %d: node %d is no longer live", req.RangeId, n.ID)
		default:
		}
	}
	rd, err := n.ranges.byID(ctx, req.RangeId)
	if err != nil {
		return nil, err
	}
	if rd.Leaseholder != n.ID {
		// The lease may have just moved here.
		n.ranges.invalidate()
		if rd, err = n.ranges.byID(ctx, req.RangeId); err != nil {
			return nil, err
		}
	}
	if rd.Leaseholder != n.ID {
		return nil, fmt.Errorf("writing to range %d: node %d is not its leaseholder (node %d is)", rd.RangeID, n.ID, rd.Leaseholder)
	}
	apply := &clusterpb.ApplyRequest{RangeId: req.RangeId, Ts: req.Ts, Ops: req.Ops}
	type result struct {
		id  int32
		err error
	}
	results := make(chan result, len(rd.Replicas))
	for _, id := range rd.Replicas {
		go func(id int32) {
			if id == n.ID {
				results <- result{id, n.applyLocal(apply)}
				return
			}
			cl, err := n.NodeClient(ctx, id)
			if err == nil {
				_, err = cl.Apply(ctx, apply)
			}
			if err != nil {
				err = fmt.Errorf("replicating to node %d: %w", id, err)
			}
			results <- result{id, err}
		}(id)
	}
	failed := map[int32]error{}
	for range rd.Replicas {
		if r := <-results; r.err != nil {
			failed[r.id] = r.err
		}
	}
	if len(failed) > 0 {
		// A replica on a dead node is left behind (the reference cluster
		// has no replica recovery); every live replica must have the write.
		live, err := n.Meta.LiveNodes(ctx)
		var errs []error
		for id, ferr := range failed {
			if err != nil || live[id] {
				errs = append(errs, ferr)
			}
		}
		if len(errs) > 0 {
			return nil, errors.Join(errs...)
		}
	}
	return &clusterpb.WriteResponse{}, nil
}

func (n *Node) applyLocal(req *clusterpb.ApplyRequest) error {
	ts := TSFromPB(req.Ts)
	ops := make([]mvcc.Op, len(req.Ops))
	for i, o := range req.Ops {
		ops[i] = mvcc.Op{Key: o.Key, TS: ts, Value: o.Value, Delete: o.Delete}
	}
	// Synced: a write is acknowledged once every replica has it, so it
	// must survive the replica's process dying right after. Unsynced,
	// Pebble keeps the WAL's last partial block in memory, and a killed
	// and restarted replica silently lacks its newest acknowledged writes
	// (then serves them as missing once it holds the lease). Concurrent
	// writers share the fsync (Pebble's group commit).
	return n.Store.Apply(ops, true)
}

func (s *nodeServer) Apply(ctx context.Context, req *clusterpb.ApplyRequest) (*clusterpb.ApplyResponse, error) {
	s.n.Clock.Update(TSFromPB(req.Ts))
	return &clusterpb.ApplyResponse{}, s.n.applyLocal(req)
}

func (s *nodeServer) Close(ctx context.Context, req *clusterpb.CloseRequest) (*clusterpb.CloseResponse, error) {
	n := s.n
	ts := TSFromPB(req.Ts)
	n.Clock.Update(ts)
	n.mu.Lock()
	n.closed = n.closed.Forward(ts)
	// Wake the waiter if ctx ends, so a cancelled Close does not hang.
	stop := context.AfterFunc(ctx, func() { n.mu.Lock(); n.cond.Broadcast(); n.mu.Unlock() })
	defer stop()
	for ctx.Err() == nil && n.hasInflightAtOrBelow(ts) {
		n.cond.Wait()
	}
	closed := n.closed
	n.mu.Unlock()
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	return &clusterpb.CloseResponse{Closed: TSToPB(closed)}, nil
}

func (n *Node) hasInflightAtOrBelow(ts hlc.Timestamp) bool {
	for t := range n.inflight {
		if t.LessEq(ts) {
			return true
		}
	}
	return false
}

func (s *nodeServer) Scan(req *clusterpb.ScanRequest, stream clusterpb.Node_ScanServer) error {
	const batchBytes = 256 << 10
	var rows []*clusterpb.KVOp
	size := 0
	err := s.n.Store.Scan(stream.Context(), SpanFromPB(req.Span), TSFromPB(req.Ts), func(k, v []byte) error {
		rows = append(rows, &clusterpb.KVOp{Key: append([]byte(nil), k...), Value: append([]byte(nil), v...)})
		size += len(k) + len(v)
		if size >= batchBytes {
			if err := stream.Send(&clusterpb.ScanResponse{Rows: rows}); err != nil {
				return err
			}
			rows, size = nil, 0
		}
		return nil
	})
	if err != nil {
		return err
	}
	if len(rows) > 0 {
		return stream.Send(&clusterpb.ScanResponse{Rows: rows})
	}
	return nil
}

// chunkSender turns Export's byte stream into gRPC messages of at most
// chunkSize bytes.
type chunkSender struct {
	stream clusterpb.Node_ExportServer
	buf    []byte
}

const chunkSize = 1 << 20

func (c *chunkSender) Write(p []byte) (int, error) {
	total := len(p)
	for len(p) > 0 {
		k := min(chunkSize-len(c.buf), len(p))
		c.buf = append(c.buf, p[:k]...)
		p = p[k:]
		if len(c.buf) == chunkSize {
			if err := c.flush(); err != nil {
				return 0, err
			}
		}
	}
	return total, nil
}

func (c *chunkSender) flush() error {
	if len(c.buf) == 0 {
		return nil
	}
	err := c.stream.Send(&clusterpb.ExportChunk{Data: c.buf})
	c.buf = c.buf[:0]
	return err
}

func (s *nodeServer) Export(req *clusterpb.ExportRequest, stream clusterpb.Node_ExportServer) error {
	cs := &chunkSender{stream: stream, buf: make([]byte, 0, chunkSize)}
	sum, err := s.n.Store.Export(stream.Context(), mvcc.ExportOptions{
		Span: SpanFromPB(req.Span), StartTS: TSFromPB(req.StartTs), EndTS: TSFromPB(req.EndTs),
		AllRevisions: req.AllRevisions, TargetSize: req.TargetSize,
	}, cs)
	if err != nil {
		return err
	}
	if err := cs.flush(); err != nil {
		return err
	}
	return stream.Send(&clusterpb.ExportChunk{Summary: &clusterpb.ExportSummary{
		Entries: sum.Entries, LogicalBytes: sum.LogicalBytes, ResumeKey: sum.ResumeKey,
	}})
}

func (s *nodeServer) Ingest(stream clusterpb.Node_IngestServer) error {
	pr, pw := io.Pipe()
	done := make(chan error, 1)
	go func() {
		err := s.n.ingestLocal(stream.Context(), pr)
		// Staging may stop reading early (no scratch space, a failed
		// copy): close the pipe so the receive loop's Write returns
		// instead of blocking forever.
		pr.CloseWithError(cmp.Or(err, errIngestDone))
		done <- err
	}()
	var total int64
	for {
		c, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			pw.CloseWithError(err)
			<-done
			return err
		}
		if len(c.Data) > 0 {
			if _, err := pw.Write(c.Data); err != nil {
				if ierr := <-done; ierr != nil {
					return ierr
				}
				return err
			}
			total += int64(len(c.Data))
		}
	}
	pw.Close()
	if err := <-done; err != nil {
		return err
	}
	return stream.SendAndClose(&clusterpb.IngestResponse{Bytes: total})
}

func (s *nodeServer) ClearSpan(ctx context.Context, req *clusterpb.ClearRequest) (*clusterpb.ClearResponse, error) {
	return &clusterpb.ClearResponse{}, s.n.Store.ClearSpan(SpanFromPB(req.Span))
}

// TSToPB converts a timestamp to its wire form.
func TSToPB(t hlc.Timestamp) *clusterpb.Timestamp {
	return &clusterpb.Timestamp{WallTime: t.WallTime, Logical: t.Logical}
}

// TSFromPB converts a wire timestamp; nil is the zero timestamp.
func TSFromPB(t *clusterpb.Timestamp) hlc.Timestamp {
	if t == nil {
		return hlc.Timestamp{}
	}
	return hlc.Timestamp{WallTime: t.WallTime, Logical: t.Logical}
}

// SpanToPB converts a span to its wire form.
func SpanToPB(s spans.Span) *clusterpb.Span { return &clusterpb.Span{Key: s.Key, EndKey: s.EndKey} }

// SpanFromPB converts a wire span.
func SpanFromPB(s *clusterpb.Span) spans.Span {
	if s == nil {
		return spans.Span{}
	}
	return spans.Span{Key: s.Key, EndKey: s.EndKey}
}

// rangeCache keeps range descriptors read from etcd.
type rangeCache struct {
	meta    *Meta
	mu      sync.Mutex
	byStart []RangeDesc
	ids     map[int64]RangeDesc
	loaded  time.Time
}

func newRangeCache(m *Meta) *rangeCache { return &rangeCache{meta: m} }

func (c *rangeCache) invalidate() {
	c.mu.Lock()
	c.byStart, c.ids = nil, nil
	c.mu.Unlock()
}

func (c *rangeCache) load(ctx context.Context) error {
	rs, err := c.meta.Ranges(ctx)
	if err != nil {
		return fmt.Errorf("reading range descriptors: %w", err)
	}
	ids := make(map[int64]RangeDesc, len(rs))
	for _, r := range rs {
		ids[r.RangeID] = r
	}
	c.mu.Lock()
	c.byStart, c.ids, c.loaded = rs, ids, time.Now()
	c.mu.Unlock()
	return nil
}

func (c *rangeCache) find(key []byte) (RangeDesc, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	i := sort.Search(len(c.byStart), func(i int) bool { return string(c.byStart[i].Start) > string(key) }) - 1
	if i >= 0 && c.byStart[i].Span().ContainsKey(key) {
		return c.byStart[i], true
	}
	return RangeDesc{}, false
}

func (c *rangeCache) lookup(ctx context.Context, key []byte) (RangeDesc, error) {
	if rd, ok := c.find(key); ok {
		return rd, nil
	}
	if err := c.load(ctx); err != nil {
		return RangeDesc{}, err
	}
	if rd, ok := c.find(key); ok {
		return rd, nil
	}
	return RangeDesc{}, fmt.Errorf("no range holds key %q", key)
}

func (c *rangeCache) byID(ctx context.Context, id int64) (RangeDesc, error) {
	c.mu.Lock()
	rd, ok := c.ids[id]
	c.mu.Unlock()
	if ok {
		return rd, nil
	}
	if err := c.load(ctx); err != nil {
		return RangeDesc{}, err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if rd, ok := c.ids[id]; ok {
		return rd, nil
	}
	return RangeDesc{}, fmt.Errorf("range %d: %w", id, ErrNotFound)
}

func (c *rangeCache) overlapping(ctx context.Context, span spans.Span) ([]RangeDesc, error) {
	if err := c.load(ctx); err != nil {
		return nil, err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []RangeDesc
	for _, r := range c.byStart {
		if r.Span().Overlaps(span) {
			out = append(out, r)
		}
	}
	return out, nil
}
