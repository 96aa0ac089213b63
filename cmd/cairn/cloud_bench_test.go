package main

import (
	"context"
	"fmt"
	"net/url"
	"os"
	"testing"
	"time"

	"github.com/cairnbackup/cairn/core/server"
	"github.com/cairnbackup/cairn/core/workload/movr"
	"github.com/cairnbackup/cairn/internal/testservers"
)

// BenchmarkBackupTo measures full-backup throughput (logical MB/s) of one
// movr dataset to local storage and, through their plugins, to each real
// storage server: MinIO (S3), Azurite (Azure Blob) and fake-gcs-server
// (GCS), all on 127.0.0.1. CAIRN_BENCH_BYTES sets the dataset's size
// (default 100 MB). `make bench` runs it.
func BenchmarkBackupTo(b *testing.B) {
	size := int64(100e6)
	if s := os.Getenv("CAIRN_BENCH_BYTES"); s != "" {
		n, err := parseSize(s)
		if err != nil {
			b.Fatal(err)
		}
		size = n
	}
	ctx := context.Background()
	plugins := cloudPlugins(b)
	srv, err := server.StartLocal(ctx, server.Config{
		Dir: b.TempDir(), Nodes: 9, RegionOf: movr.RegionOfKey, PluginDir: plugins,
		AdoptInterval: 100 * time.Millisecond,
	})
	if err != nil {
		b.Fatal(err)
	}
	defer srv.Close()
	ids, err := srv.CreateMovr(ctx, "movr")
	if err != nil {
		b.Fatal(err)
	}
	stats, err := movr.Load(ctx, server.KV{Node: srv.Gateway().Node}, ids, movr.Config{Seed: 1, Bytes: size, Concurrency: 4, BatchSize: 200}, nil)
	if err != nil {
		b.Fatal(err)
	}
	m := testservers.StartMinIO(b)
	a := testservers.StartAzurite(b)
	g := testservers.StartFakeGCS(b)
	dests := []struct{ name, uri string }{
		{"nodelocal", "nodelocal://1/bench"},
		{"s3-minio", m.URI(m.Bucket, "bench", "")},
		{"azure-azurite", a.URI(a.Container + "/bench")},
		{"gcs-fake", fmt.Sprintf("gs://%s/bench?GCS_ENDPOINT=%s", g.Bucket, url.QueryEscape(g.Endpoint))},
	}
	seq := 0
	for _, d := range dests {
		b.Run(d.name, func(b *testing.B) {
			b.SetBytes(stats.Bytes)
			for i := 0; i < b.N; i++ {
				seq++ // every run writes a layer of its own
				subdir := fmt.Sprintf("2026/01/01-%02d%02d%02d.00", seq/3600%24, seq/60%60, seq%60)
				stmt := fmt.Sprintf("BACKUP DATABASE movr INTO '%s' IN '%s'", subdir, d.uri)
				if _, err := srv.Exec(ctx, stmt, server.ExecOptions{}); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(stats.Bytes)*float64(b.N)/1e6/b.Elapsed().Seconds(), "logical-MB/s")
		})
	}
}
