package main_test

import (
	"context"
	"crypto/rand"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/cairnbackup/cairn/core/cloud/local"
	"github.com/cairnbackup/cairn/core/pluginhost"
	"github.com/cairnbackup/cairn/sdk/storage"
	"github.com/cairnbackup/cairn/sdk/storage/storagetest"
)

// benchBytes is how much each throughput iteration writes and reads back:
// CAIRN_BENCH_BYTES (a byte count, or with a MiB/GiB suffix), default 1 GiB.
func benchBytes(b *testing.B) int64 {
	s := os.Getenv("CAIRN_BENCH_BYTES")
	if s == "" {
		return 1 << 30
	}
	mult := int64(1)
	for suf, m := range map[string]int64{"GiB": 1 << 30, "MiB": 1 << 20, "GB": 1e9, "MB": 1e6} {
		if len(s) > len(suf) && s[len(s)-len(suf):] == suf {
			s, mult = s[:len(s)-len(suf)], m
			break
		}
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil || n <= 0 {
		b.Fatalf("CAIRN_BENCH_BYTES=%q is not a size", os.Getenv("CAIRN_BENCH_BYTES"))
	}
	return n * mult
}

// roundTrip writes total bytes to s in 1 MiB writes, commits, reads them
// back, deletes, and returns the seconds spent writing and reading.
func roundTrip(b *testing.B, s storage.Store, total int64, chunk []byte) (w, r float64) {
	ctx := context.Background()
	start := time.Now()
	wr, err := s.Write(ctx, "bench", storage.WriteOptions{})
	if err != nil {
		b.Fatal(err)
	}
	for n := int64(0); n < total; n += int64(len(chunk)) {
		if _, err := wr.Write(chunk[:min(int64(len(chunk)), total-n)]); err != nil {
			b.Fatal(err)
		}
	}
	if err := wr.Close(); err != nil {
		b.Fatal(err)
	}
	mid := time.Now()
	rd, err := s.Read(ctx, "bench", 0, -1)
	if err != nil {
		b.Fatal(err)
	}
	got, err := io.CopyBuffer(io.Discard, rd, make([]byte, len(chunk)))
	rd.Close()
	if err != nil || got != total {
		b.Fatalf("read %d bytes, %v; want %d", got, err, total)
	}
	end := time.Now()
	if err := s.Delete(ctx, "bench"); err != nil {
		b.Fatal(err)
	}
	return mid.Sub(start).Seconds(), end.Sub(mid).Seconds()
}

// BenchmarkThroughput writes and reads CAIRN_BENCH_BYTES through the
// local store in process, through the storage-local plugin over
// go-plugin (the bare client shim), and through the plugin host (with its
// restart wrapper and write spool), and reports MB/s of each and the
// out-of-process to in-process ratio.
func BenchmarkThroughput(b *testing.B) {
	total := benchBytes(b)
	chunk := make([]byte, 1<<20)
	rand.Read(chunk)
	inProcess := func(b *testing.B) storage.Store {
		s, err := local.New(b.TempDir())
		if err != nil {
			b.Fatal(err)
		}
		return s
	}
	overPlugin := func(b *testing.B) storage.Store {
		return storagetest.OverPlugin(b, pluginBin, "file://"+b.TempDir())
	}
	throughHost := func(b *testing.B) storage.Store {
		dir := b.TempDir()
		if err := os.Symlink(pluginBin, filepath.Join(dir, "storage-local")); err != nil {
			b.Fatal(err)
		}
		h, err := pluginhost.New(context.Background(), pluginhost.Config{Dir: dir, Logger: slog.New(slog.DiscardHandler)})
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { h.Close() })
		p, _ := h.Storage("file")
		s, err := p.Open(context.Background(), "file://"+b.TempDir())
		if err != nil {
			b.Fatal(err)
		}
		return s
	}
	for _, mode := range []struct {
		name string
		open func(*testing.B) storage.Store
	}{{"OverPlugin", overPlugin}, {"ThroughHost", throughHost}} {
		b.Run(mode.name, func(b *testing.B) {
			base, other := inProcess(b), mode.open(b)
			defer base.Close()
			defer other.Close()
			var bw, br, ow, or float64
			for range b.N {
				w, r := roundTrip(b, base, total, chunk)
				bw, br = bw+w, br+r
				w, r = roundTrip(b, other, total, chunk)
				ow, or = ow+w, or+r
			}
			mb := float64(total) * float64(b.N) / 1e6
			b.ReportMetric(mb/bw, "inproc-write-MB/s")
			b.ReportMetric(mb/br, "inproc-read-MB/s")
			b.ReportMetric(mb/ow, "plugin-write-MB/s")
			b.ReportMetric(mb/or, "plugin-read-MB/s")
			b.ReportMetric((bw+br)/(ow+or), "ratio")
			b.ReportMetric(0, "ns/op")
		})
	}
}

// BenchmarkStat is the round trip of a small call: Stat of a present
// object, in process and over go-plugin.
func BenchmarkStat(b *testing.B) {
	for _, mode := range []string{"InProcess", "OverPlugin"} {
		b.Run(mode, func(b *testing.B) {
			var s storage.Store
			if mode == "InProcess" {
				ls, err := local.New(b.TempDir())
				if err != nil {
					b.Fatal(err)
				}
				s = ls
			} else {
				s = storagetest.OverPlugin(b, pluginBin, "file://"+b.TempDir())
			}
			defer s.Close()
			ctx := context.Background()
			if err := storage.WriteAll(ctx, s, "obj", []byte("x"), storage.WriteOptions{}); err != nil {
				b.Fatal(err)
			}
			b.ResetTimer()
			for range b.N {
				if _, err := s.Stat(ctx, "obj"); err != nil {
					b.Fatal(err)
				}
			}
			b.StopTimer()
			b.ReportMetric(float64(b.Elapsed().Microseconds())/float64(b.N), "µs/call")
		})
	}
}
