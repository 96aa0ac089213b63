package server

import (
	"context"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"google.golang.org/grpc"

	"github.com/cairnbackup/cairn/core/backup"
	"github.com/cairnbackup/cairn/core/jobs"
	"github.com/cairnbackup/cairn/core/processorpb"
)

// Metric names a node serves at /metrics.
const (
	MetricJobs            = "cairn_jobs"
	MetricExportedBytes   = "cairn_exported_bytes_total"
	MetricExportedFiles   = "cairn_exported_files_total"
	MetricSpanRetries     = "cairn_span_retries_total"
	MetricCheckpointAge   = "cairn_checkpoint_age_seconds"
	MetricPluginErrors    = "cairn_plugin_errors_total"
	metricsScrapeDeadline = 5 * time.Second
)

// nodeMetrics holds one node's counters; the gauges are computed at scrape
// time from the job records and the plugin host.
type nodeMetrics struct {
	exportedBytes, exportedFiles, spanRetries prometheus.Counter
}

func newNodeMetrics(id int32) *nodeMetrics {
	labels := prometheus.Labels{"node": itoa32(id)}
	return &nodeMetrics{
		exportedBytes: prometheus.NewCounter(prometheus.CounterOpts{Name: MetricExportedBytes,
			Help: "Bytes of sstables this node's backup processors exported.", ConstLabels: labels}),
		exportedFiles: prometheus.NewCounter(prometheus.CounterOpts{Name: MetricExportedFiles,
			Help: "Files this node's backup processors exported.", ConstLabels: labels}),
		spanRetries: prometheus.NewCounter(prometheus.CounterOpts{Name: MetricSpanRetries,
			Help: "Backup processor runs on this node that ended in an error or were cancelled before finishing their spans; their unfinished spans are exported again.", ConstLabels: labels}),
	}
}

// streamInterceptor counts what the backup processor sends: every
// BackupProgress is one finished span with its files.
func (m *nodeMetrics) streamInterceptor(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
	if !strings.HasSuffix(info.FullMethod, "BackupProcessor/Run") {
		return handler(srv, ss)
	}
	err := handler(srv, &countingStream{ServerStream: ss, m: m})
	if err != nil {
		m.spanRetries.Inc()
	}
	return err
}

type countingStream struct {
	grpc.ServerStream
	m *nodeMetrics
}

func (s *countingStream) SendMsg(msg any) error {
	err := s.ServerStream.SendMsg(msg)
	if p, ok := msg.(*processorpb.BackupProgress); ok && err == nil {
		for _, f := range p.Files {
			s.m.exportedFiles.Inc()
			s.m.exportedBytes.Add(float64(f.Size))
		}
	}
	return err
}

// jobsCollector reads the job records at scrape time.
type jobsCollector struct {
	nd                              *Node
	jobsDesc, ckptDesc, pluginsDesc *prometheus.Desc
}

func (c *jobsCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- c.jobsDesc
	ch <- c.ckptDesc
	ch <- c.pluginsDesc
}

func (c *jobsCollector) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), metricsScrapeDeadline)
	defer cancel()
	rt := c.nd.Runtime
	recs, err := rt.Registry.List(ctx)
	if err != nil {
		ch <- prometheus.NewInvalidMetric(c.jobsDesc, err)
	} else {
		counts := map[jobs.State]int{}
		for _, s := range jobs.AllStates {
			counts[s] = 0
		}
		var age float64
		for _, r := range recs {
			counts[r.State]++
			// A running backup's record is rewritten with each checkpoint.
			if r.Type == backup.JobType && r.State == jobs.StateRunning && r.ClaimNode == rt.Node.ID {
				age = max(age, time.Since(r.Modified).Seconds())
			}
		}
		for s, n := range counts {
			ch <- prometheus.MustNewConstMetric(c.jobsDesc, prometheus.GaugeValue, float64(n), string(s))
		}
		ch <- prometheus.MustNewConstMetric(c.ckptDesc, prometheus.GaugeValue, age)
	}
	var restarts int
	if rt.Plugins != nil {
		for _, p := range rt.Plugins.Plugins() {
			restarts += p.Restarts
		}
	}
	ch <- prometheus.MustNewConstMetric(c.pluginsDesc, prometheus.CounterValue, float64(restarts))
}

// handler serves the node's metrics in the Prometheus text format.
func (m *nodeMetrics) handler(nd *Node) http.Handler {
	reg := prometheus.NewRegistry()
	labels := prometheus.Labels{"node": itoa32(nd.ID())}
	reg.MustRegister(m.exportedBytes, m.exportedFiles, m.spanRetries,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	reg.MustRegister(&jobsCollector{
		nd: nd,
		jobsDesc: prometheus.NewDesc(MetricJobs, "Jobs of the cluster by state (read from etcd at scrape time).",
			[]string{"state"}, labels),
		ckptDesc: prometheus.NewDesc(MetricCheckpointAge,
			"Seconds since the oldest-updated running backup coordinated by this node last checkpointed; 0 when none runs here.", nil, labels),
		pluginsDesc: prometheus.NewDesc(MetricPluginErrors,
			"Plugin processes of this node that crashed and were restarted.", nil, labels),
	})
	return promhttp.HandlerFor(reg, promhttp.HandlerOpts{})
}

func itoa32(v int32) string { return strconv.Itoa(int(v)) }
