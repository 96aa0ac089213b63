package cluster_test

import (
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cairnbackup/cairn/core/cluster"
	"github.com/cairnbackup/cairn/core/hlc"
	"github.com/cairnbackup/cairn/core/keys"
	"github.com/cairnbackup/cairn/core/workload/movr"
)

// TestWriteReachesEveryReplica checks that a write, through a gateway that
// holds a replica or one that does not, is in every replica's own store
// when Write returns, and in no other node's store.
func TestWriteReachesEveryReplica(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	l := startLocal(t, t.TempDir())
	_, tables := createMovr(t, l, "movr")
	rides := tables["rides"].ID

	check := func(key []byte, want string, wantFound bool) {
		t.Helper()
		rd := rangeOf(t, l, key)
		for _, n := range l.Nodes {
			v, ok := storeGet(t, n, key, n.Clock.Now())
			switch {
			case !isReplica(rd, n.ID) && ok:
				t.Errorf("%s: node %d holds no replica of range %d but has %q", keys.Pretty(key), n.ID, rd.RangeID, v)
			case isReplica(rd, n.ID) && (ok != wantFound || v != want):
				t.Errorf("%s: replica %d has (%q, %v), want (%q, %v)", keys.Pretty(key), n.ID, v, ok, want, wantFound)
			}
		}
	}

	for i, c := range movr.Cities {
		key := rowKey(rides, c.Name, uint64(i))
		rd := rangeOf(t, l, key)
		gateways := map[string]*cluster.Node{
			"leaseholder": l.Node(rd.Leaseholder),
			"follower":    l.Node(followers(rd)[0]),
			"non-replica": nonReplica(t, l, rd),
		}
		for name, gw := range gateways {
			v := fmt.Sprintf("%s via %s", c.Name, name)
			if err := gw.Write(ctx, []cluster.Op{put(key, v)}); err != nil {
				t.Fatalf("writing through node %d (%s): %v", gw.ID, name, err)
			}
			check(key, v, true)
		}
		before := l.Nodes[0].Clock.Now()
		if err := nonReplica(t, l, rd).Write(ctx, []cluster.Op{{Key: key, Delete: true}}); err != nil {
			t.Fatal(err)
		}
		check(key, "", false)
		// The tombstone hides the value only from its timestamp on.
		for _, id := range rd.Replicas {
			if _, ok := storeGet(t, l.Node(id), key, before); !ok {
				t.Errorf("%s: replica %d lost the value below the delete", keys.Pretty(key), id)
			}
		}
	}

	// One batch spanning every city's range of two tables lands everywhere.
	var ops []cluster.Op
	for _, c := range movr.Cities {
		ops = append(ops, put(rowKey(rides, c.Name, 1000), "batch "+c.Name))
		ops = append(ops, put(rowKey(tables["users"].ID, c.Name, 1000), "batch "+c.Name))
	}
	if err := l.Nodes[4].Write(ctx, ops); err != nil {
		t.Fatal(err)
	}
	for _, op := range ops {
		check(op.Key, string(op.Value), true)
	}

	// A key no range holds is refused.
	if err := l.Nodes[0].Write(ctx, []cluster.Op{put(keys.TablePrefix(99999), "x")}); err == nil {
		t.Fatal("writing a key outside every range succeeded")
	}
}

// TestCloseTimestampPushesWrites closes a timestamp ahead of every clock and
// checks that a write through any gateway then lands above it.
func TestCloseTimestampPushesWrites(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	l := startLocal(t, t.TempDir())
	_, tables := createMovr(t, l, "movr")
	users := tables["users"].ID
	rd := rangeOf(t, l, cityPrefix(users, "paris"))

	// A minute ahead of every clock, so each gateway's first attempt is
	// refused and must retry above it.
	closed := hlc.Timestamp{WallTime: time.Now().Add(time.Minute).UnixNano()}
	for _, n := range l.Nodes {
		closed = closed.Forward(n.Clock.Now())
	}
	closer := nonReplica(t, l, rd)
	if err := closer.CloseTimestamp(ctx, rd.Span(), closed); err != nil {
		t.Fatal(err)
	}

	for _, gw := range l.Nodes {
		key := rowKey(users, "paris", uint64(gw.ID))
		if err := gw.Write(ctx, []cluster.Op{put(key, "after close")}); err != nil {
			t.Fatalf("writing through node %d: %v", gw.ID, err)
		}
		if now := gw.Clock.Now(); !closed.Less(now) {
			t.Errorf("gateway %d's clock %s did not move past the closed timestamp %s", gw.ID, now, closed)
		}
		for _, id := range rd.Replicas {
			n := l.Node(id)
			if v, ok := storeGet(t, n, key, closed); ok {
				t.Errorf("write through node %d is visible at the closed timestamp on replica %d: %q", gw.ID, id, v)
			}
			if _, ok := storeGet(t, n, key, n.Clock.Now()); !ok {
				t.Errorf("write through node %d is missing on replica %d", gw.ID, id)
			}
		}
	}

	// Closing is monotonic: closing an earlier time leaves the later one.
	if err := closer.CloseTimestamp(ctx, rd.Span(), hlc.Timestamp{WallTime: 1}); err != nil {
		t.Fatal(err)
	}
	key := rowKey(users, "paris", 0)
	if err := l.Nodes[0].Write(ctx, []cluster.Op{put(key, "x")}); err != nil {
		t.Fatal(err)
	}
	if _, ok := storeGet(t, l.Node(rd.Leaseholder), key, closed); ok {
		t.Error("a write landed at or below the closed timestamp after closing an earlier one")
	}
}

// TestCloseRacingWriters runs writers through every gateway while a
// timestamp closes, and checks that every replica agrees on every write at
// that timestamp: writes acknowledged before the close are visible at it,
// writes started after it are not, and racing ones are one or the other on
// every replica alike.
func TestCloseRacingWriters(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	l := startLocal(t, t.TempDir())
	_, tables := createMovr(t, l, "movr")
	rides := tables["rides"].ID
	span := keys.TableSpan(rides)

	const pre, post = 10, 10
	type write struct {
		key          []byte
		ackedBefore  bool // acknowledged before the close began
		startedAfter bool // started after the close returned
	}
	var (
		closing  atomic.Bool // set before the close begins
		closedCh = make(chan struct{})
		preDone  sync.WaitGroup
		wg       sync.WaitGroup
		results  = make([][]write, len(l.Nodes))
		errs     = make([]error, len(l.Nodes))
	)
	preDone.Add(len(l.Nodes))
	for w, gw := range l.Nodes {
		wg.Add(1)
		go func() {
			defer wg.Done()
			signalled := false
			defer func() {
				if !signalled {
					preDone.Done()
				}
			}()
			afterClose := 0
			for i := 0; afterClose < post; i++ {
				city := movr.Cities[(w+i)%len(movr.Cities)].Name
				key := rowKey(rides, city, uint64(w)<<32|uint64(i))
				isClosed := false
				select {
				case <-closedCh:
					isClosed = true
				default:
				}
				if err := gw.Write(ctx, []cluster.Op{put(key, fmt.Sprint(w, i))}); err != nil {
					errs[w] = err
					return
				}
				results[w] = append(results[w], write{key: key, ackedBefore: !closing.Load(), startedAfter: isClosed})
				if isClosed {
					afterClose++
				}
				if i+1 == pre {
					signalled = true
					preDone.Done()
				}
			}
		}()
	}

	// Close once every writer has written some, while they keep writing.
	preDone.Wait()
	closing.Store(true)
	closer := l.Nodes[len(l.Nodes)-1]
	for _, n := range l.Nodes {
		closer.Clock.Update(n.Clock.Now())
	}
	closedTS := closer.Clock.Now()
	if err := closer.CloseTimestamp(ctx, span, closedTS); err != nil {
		t.Fatal(err)
	}
	close(closedCh)
	wg.Wait()
	for w, err := range errs {
		if err != nil {
			t.Fatalf("writer %d: %v", w, err)
		}
	}

	// Every replica of every range reads the same rows at the closed time.
	atClosed := map[string]bool{}
	for _, rd := range tableRanges(t, l.Nodes[0].Meta, rides) {
		var first map[string]string
		for i, id := range rd.Replicas {
			rows := storeRows(t, l.Node(id), rd.Span(), closedTS)
			if i == 0 {
				first = rows
				for k := range rows {
					atClosed[k] = true
				}
				continue
			}
			if len(rows) != len(first) {
				t.Errorf("range %d: replica %d has %d rows at %s, replica %d has %d",
					rd.RangeID, id, len(rows), closedTS, rd.Replicas[0], len(first))
			}
			for k, v := range first {
				if rows[k] != v {
					t.Errorf("range %d: %s is %q on replica %d and %q on replica %d at %s",
						rd.RangeID, keys.Pretty([]byte(k)), v, rd.Replicas[0], rows[k], id, closedTS)
				}
			}
		}
		for _, id := range rd.Replicas {
			if got, want := len(storeRows(t, l.Node(id), rd.Span(), hlc.MaxTimestamp)), len(storeRows(t, l.Node(rd.Replicas[0]), rd.Span(), hlc.MaxTimestamp)); got != want {
				t.Errorf("range %d: replica %d has %d rows in all, want %d", rd.RangeID, id, got, want)
			}
		}
	}

	total, racing := 0, 0
	for _, ws := range results {
		for _, w := range ws {
			total++
			rd := rangeOf(t, l, w.key)
			for _, id := range rd.Replicas {
				if _, ok := storeGet(t, l.Node(id), w.key, hlc.MaxTimestamp); !ok {
					t.Errorf("%s: acknowledged write missing on replica %d", keys.Pretty(w.key), id)
				}
			}
			switch vis := atClosed[string(w.key)]; {
			case w.ackedBefore && !vis:
				t.Errorf("%s: acknowledged before the close but not visible at %s", keys.Pretty(w.key), closedTS)
			case w.startedAfter && vis:
				t.Errorf("%s: started after the close but visible at %s", keys.Pretty(w.key), closedTS)
			case !w.ackedBefore && !w.startedAfter:
				racing++
			}
		}
	}
	if len(atClosed) > total {
		t.Errorf("%d rows visible at %s, but only %d writes", len(atClosed), closedTS, total)
	}
	t.Logf("%d writes, %d racing the close, %d visible at %s", total, racing, len(atClosed), closedTS)
}
