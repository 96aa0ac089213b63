package movr

import (
	"context"
	"fmt"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"
)

// RunConfig shapes the light workload of Run.
type RunConfig struct {
	// Seed drives the choice of operations; worker w uses the stream of
	// (Seed, w), so one worker without a rate limit is reproducible.
	Seed int64
	// Concurrency is the number of workers; 0 means 1.
	Concurrency int
	// MaxOpsPerSecond caps the operations per second over all workers;
	// 0 means unlimited.
	MaxOpsPerSecond float64
	// LoadedRows is the number of rows of each table, by name, that Load
	// wrote (Stats.PerTable, or RowCounts of the load's Config). Run updates
	// and deletes those rows and inserts new ones with higher ids. A table
	// with no loaded rows only gets inserts.
	LoadedRows map[string]int64
	// LoadSeed is the Seed the data was loaded with, which fixes where the
	// loaded rows' keys are; 0 means Seed.
	LoadSeed int64
}

// RunStats counts the operations Run applied.
type RunStats struct {
	Inserts, Updates, Deletes int64
}

// Ops returns the total number of operations.
func (s RunStats) Ops() int64 { return s.Inserts + s.Updates + s.Deletes }

// Operation mix, in percent: inserts, then updates, then deletes.
const (
	insertPercent = 50
	updatePercent = 35
)

// tableMix weighs which table an operation touches: rides are the busiest.
var tableMix = [numTables]int{tUsers: 15, tVehicles: 20, tRides: 60, tPromoCodes: 5}

// Run applies a light mix of inserts, updates and deletes, one row per
// Write, until ctx is done. Inserted rows get ids beyond the loaded ones,
// unique across workers; updates replace a loaded row's value with a new
// version; deletes remove a loaded row (a later update may recreate it).
//
// Run returns promptly once ctx is done, and then returns nil with the
// counts so far. Any other Write error stops all workers and is returned.
func Run(ctx context.Context, kv KV, tableIDs map[string]uint32, cfg RunConfig) (RunStats, error) {
	ids, err := tableIDList(tableIDs)
	if err != nil {
		return RunStats{}, err
	}
	var loaded [numTables]int64
	for t, tbl := range Tables {
		loaded[t] = max(cfg.LoadedRows[tbl.Name], 0)
	}
	loadSeed := cfg.LoadSeed
	if loadSeed == 0 {
		loadSeed = cfg.Seed
	}
	g := newGenerator(loadSeed, loaded, ids)
	lim := newLimiter(cfg.MaxOpsPerSecond)

	var (
		nextID  [numTables]atomic.Int64
		version atomic.Uint64
		stats   struct{ inserts, updates, deletes atomic.Int64 }
	)
	for t := range numTables {
		nextID[t].Store(loaded[t])
	}
	// Versions above 0 distinguish updated values from loaded ones; offset
	// by the seed so two runs rewrite rows with different values.
	version.Store(uint64(cfg.Seed) << 32)

	runCtx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	var wg sync.WaitGroup
	for w := range max(cfg.Concurrency, 1) {
		rng := rand.New(rand.NewPCG(uint64(cfg.Seed), uint64(w)+1))
		wg.Go(func() {
			for runCtx.Err() == nil {
				if !lim.wait(runCtx) {
					return
				}
				t := pickTable(rng)
				kind := rng.IntN(100)
				if loaded[t] == 0 {
					kind = 0 // nothing loaded to update or delete
				}
				var op Op
				var counter *atomic.Int64
				switch {
				case kind < insertPercent:
					op = g.row(t, nextID[t].Add(1)-1, 0)
					counter = &stats.inserts
				case kind < insertPercent+updatePercent:
					op = g.row(t, rng.Int64N(loaded[t]), version.Add(1))
					counter = &stats.updates
				default:
					op = Op{Key: g.key(t, rng.Int64N(loaded[t])), Delete: true}
					counter = &stats.deletes
				}
				if err := kv.Write(runCtx, []Op{op}); err != nil {
					if runCtx.Err() == nil {
						cancel(fmt.Errorf("running movr workload on table %s: %w", Tables[t].Name, err))
					}
					return
				}
				counter.Add(1)
			}
		})
	}
	wg.Wait()
	st := RunStats{Inserts: stats.inserts.Load(), Updates: stats.updates.Load(), Deletes: stats.deletes.Load()}
	if ctx.Err() != nil {
		return st, nil
	}
	if runCtx.Err() != nil {
		return st, context.Cause(runCtx)
	}
	return st, nil
}

func pickTable(rng *rand.Rand) int {
	total := 0
	for _, w := range tableMix {
		total += w
	}
	n := rng.IntN(total)
	for t, w := range tableMix {
		if n < w {
			return t
		}
		n -= w
	}
	return tRides
}

// limiter spaces operations evenly at a fixed rate, without bursts.
type limiter struct {
	interval time.Duration // 0: unlimited
	mu       sync.Mutex
	next     time.Time
}

func newLimiter(perSecond float64) *limiter {
	if perSecond <= 0 {
		return &limiter{}
	}
	return &limiter{interval: time.Duration(float64(time.Second) / perSecond)}
}

// wait blocks until the caller's slot comes, and reports false if ctx is
// done first.
func (l *limiter) wait(ctx context.Context) bool {
	if l.interval == 0 {
		return ctx.Err() == nil
	}
	l.mu.Lock()
	now := time.Now()
	slot := l.next
	if slot.Before(now) {
		slot = now
	}
	l.next = slot.Add(l.interval)
	l.mu.Unlock()
	d := time.Until(slot)
	if d <= 0 {
		return ctx.Err() == nil
	}
	timer := time.NewTimer(d)
	defer timer.Stop()
	select {
	case <-timer.C:
		return true
	case <-ctx.Done():
		return false
	}
}
