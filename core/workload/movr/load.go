package movr

import (
	"context"
	"errors"
	"fmt"
	"math"
	"sync"
)

// Config sizes and paces a Load. Exactly one of Bytes and Rows is set.
type Config struct {
	// Seed selects the dataset; the same Seed and size give the same rows.
	Seed int64
	// Bytes is the approximate total of len(key)+len(value) over all rows.
	Bytes int64
	// Rows is the total number of rows, over all tables.
	Rows int
	// BatchSize is the number of rows per Write; 0 means 100.
	BatchSize int
	// Concurrency is the number of concurrent Writes; 0 means 1.
	Concurrency int
}

// Stats counts what a Load wrote.
type Stats struct {
	Rows, Bytes int64
	// PerTable is the number of rows of each table, by table name; pass it
	// to Run as RunConfig.LoadedRows.
	PerTable map[string]int64
	// PerTableBytes is the logical bytes of each table, by table name.
	PerTableBytes map[string]int64
}

// RowCounts returns how many rows of each table, by name, Load writes for
// cfg.
func RowCounts(cfg Config) (map[string]int64, error) {
	counts, err := rowCounts(cfg)
	if err != nil {
		return nil, err
	}
	out := make(map[string]int64, numTables)
	for t, n := range counts {
		out[Tables[t].Name] = n
	}
	return out, nil
}

func rowCounts(cfg Config) ([numTables]int64, error) {
	var counts [numTables]int64
	var totalWeight int64
	for _, w := range rowWeight {
		totalWeight += w
	}
	switch {
	case cfg.Bytes < 0 || cfg.Rows < 0:
		return counts, fmt.Errorf("sizing movr: negative size (bytes=%d, rows=%d)", cfg.Bytes, cfg.Rows)
	case (cfg.Bytes == 0) == (cfg.Rows == 0):
		return counts, errors.New("sizing movr: exactly one of Bytes and Rows must be set")
	case cfg.Rows > 0:
		var sum int64
		for t, w := range rowWeight {
			counts[t] = int64(cfg.Rows) * w / totalWeight
			sum += counts[t]
		}
		counts[tRides] += int64(cfg.Rows) - sum
	default:
		avg := averageRowBytes(cfg.Seed)
		var unit float64
		for t, w := range rowWeight {
			unit += float64(w) * avg[t]
		}
		units := float64(cfg.Bytes) / unit
		for t, w := range rowWeight {
			counts[t] = int64(math.Round(units * float64(w)))
		}
	}
	return counts, nil
}

// averageRowBytes measures the mean key+value length of each table on a
// sample of rows; values have a fixed size, so only keys vary.
func averageRowBytes(seed int64) [numTables]float64 {
	const sample = 90 // ten rows per city
	var counts [numTables]int64
	for t := range counts {
		counts[t] = sample
	}
	g := newGenerator(seed, counts, [numTables]uint32{1, 2, 3, 4})
	var avg [numTables]float64
	for t := range numTables {
		var total int
		for i := range int64(sample) {
			op := g.row(t, i, 0)
			total += len(op.Key) + len(op.Value)
		}
		avg[t] = float64(total) / sample
	}
	return avg
}

// tableIDList orders tableIDs as Tables, requiring an id for every table.
func tableIDList(tableIDs map[string]uint32) ([numTables]uint32, error) {
	var ids [numTables]uint32
	for t, tbl := range Tables {
		id, ok := tableIDs[tbl.Name]
		if !ok {
			return ids, fmt.Errorf("resolving movr tables: no id for table %q", tbl.Name)
		}
		ids[t] = id
	}
	return ids, nil
}

// batch is the rows [lo, hi) of table t.
type batch struct {
	t      int
	lo, hi int64
}

// batches lists the batches of a load: per-city tables city by city, so a
// batch's keys are ascending and fall within one city's range.
func batches(counts [numTables]int64, size int64, emit func(batch) bool) {
	for t := range numTables {
		n := counts[t]
		ranges := [][2]int64{{0, n}}
		if Tables[t].PerCity {
			ranges = ranges[:0]
			for c := range Cities {
				lo, hi := cityRange(c, n)
				ranges = append(ranges, [2]int64{lo, hi})
			}
		}
		for _, r := range ranges {
			for lo := r[0]; lo < r[1]; lo += size {
				if !emit(batch{t: t, lo: lo, hi: min(lo+size, r[1])}) {
					return
				}
			}
		}
	}
}

// Load writes the movr dataset sized by cfg through kv, with tables stored
// under the ids in tableIDs (which must name every table of Tables).
//
// The rows written depend only on cfg.Seed and the size, never on
// Concurrency or BatchSize. Load holds at most Concurrency batches in memory
// at once. progress, if not nil, is called after each batch with the
// logical bytes written so far; calls are serialised and the values never
// decrease. Load stops at the first error, including ctx's, and returns it;
// the rows written until then stay written.
func Load(ctx context.Context, kv KV, tableIDs map[string]uint32, cfg Config, progress func(bytesDone int64)) (Stats, error) {
	ids, err := tableIDList(tableIDs)
	if err != nil {
		return Stats{}, err
	}
	counts, err := rowCounts(cfg)
	if err != nil {
		return Stats{}, err
	}
	size := int64(cfg.BatchSize)
	if size <= 0 {
		size = 100
	}
	workers := max(cfg.Concurrency, 1)
	g := newGenerator(cfg.Seed, counts, ids)

	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)

	var (
		mu       sync.Mutex
		rows     [numTables]int64
		byteSums [numTables]int64
		done     int64
	)
	work := make(chan batch)
	var wg sync.WaitGroup
	for range workers {
		wg.Go(func() {
			for b := range work {
				if ctx.Err() != nil {
					continue // drain without writing
				}
				ops := make([]Op, 0, b.hi-b.lo)
				var n int64
				for i := b.lo; i < b.hi; i++ {
					op := g.row(b.t, i, 0)
					n += int64(len(op.Key) + len(op.Value))
					ops = append(ops, op)
				}
				if err := kv.Write(ctx, ops); err != nil {
					cancel(fmt.Errorf("loading movr table %s rows [%d, %d): %w", Tables[b.t].Name, b.lo, b.hi, err))
					continue
				}
				mu.Lock()
				rows[b.t] += int64(len(ops))
				byteSums[b.t] += n
				done += n
				if progress != nil {
					progress(done)
				}
				mu.Unlock()
			}
		})
	}
	batches(counts, size, func(b batch) bool {
		select {
		case work <- b:
			return true
		case <-ctx.Done():
			return false
		}
	})
	close(work)
	wg.Wait()

	st := Stats{PerTable: map[string]int64{}, PerTableBytes: map[string]int64{}}
	for t := range numTables {
		st.Rows += rows[t]
		st.Bytes += byteSums[t]
		st.PerTable[Tables[t].Name] = rows[t]
		st.PerTableBytes[Tables[t].Name] = byteSums[t]
	}
	if ctx.Err() != nil {
		cause := context.Cause(ctx)
		if cause == context.Canceled || cause == context.DeadlineExceeded {
			cause = fmt.Errorf("loading movr: %w", cause)
		}
		return st, cause
	}
	return st, nil
}
