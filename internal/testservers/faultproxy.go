package testservers

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log"
	"math/rand/v2"
	"net"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// Fault is a kind of failure the FaultProxy injects.
type Fault int

const (
	// FaultSlowDown answers 503 SlowDown without forwarding.
	FaultSlowDown Fault = iota
	// FaultInternalError answers 500 InternalError without forwarding.
	FaultInternalError
	// FaultReset resets the client's connection without forwarding.
	FaultReset
	// FaultDelay forwards the request after a delay.
	FaultDelay
	// FaultLoseReply forwards the request, so the server acts on it, then
	// resets the client's connection instead of relaying the reply: the
	// client cannot tell whether its request took effect.
	FaultLoseReply
	// FaultCutBody forwards the request and relays the reply, but breaks
	// the connection halfway through the body of a GET. Counted only
	// when applied (a reply with a body of 2 bytes or more).
	FaultCutBody
	numFaults
)

func (f Fault) String() string {
	switch f {
	case FaultSlowDown:
		return "slow-down"
	case FaultInternalError:
		return "internal-error"
	case FaultReset:
		return "reset"
	case FaultDelay:
		return "delay"
	case FaultLoseReply:
		return "lose-reply"
	case FaultCutBody:
		return "cut-body"
	}
	return fmt.Sprintf("fault(%d)", int(f))
}

// FaultConfig says how often and how a FaultProxy misbehaves.
type FaultConfig struct {
	// Seed makes the sequence of decisions reproducible (the requests'
	// order may still vary with concurrency).
	Seed uint64
	// Rate is the fraction of requests that get a fault, in [0, 1].
	Rate float64
	// Weights gives the relative frequency of each Fault among the
	// faulted requests; nil means all but FaultLoseReply, equally.
	Weights map[Fault]int
	// MaxDelay bounds FaultDelay's delay (uniform in [0, MaxDelay]);
	// 0 means 50ms.
	MaxDelay time.Duration
}

// FaultProxy is an HTTP reverse proxy on 127.0.0.1 that injects faults
// between a client and a server. Turn it off and on with SetRate.
type FaultProxy struct {
	// URL is the proxy's address, http://127.0.0.1:PORT.
	URL string

	proxy    *httputil.ReverseProxy
	requests atomic.Int64
	counts   [numFaults]atomic.Int64

	mu      sync.Mutex
	rng     *rand.Rand
	rate    float64
	weights [numFaults]int
	total   int
	delay   time.Duration
}

var errLoseReply = errors.New("faultproxy: losing the reply")

type (
	loseReplyKey struct{}
	cutBodyKey   struct{}
)

// StartFaultProxy starts a proxy to target (e.g. MinIO's endpoint), closed
// when the test ends. The Host header is passed through unchanged, so
// request signatures made for the proxy's address stay valid.
func StartFaultProxy(t testing.TB, target string, cfg FaultConfig) *FaultProxy {
	t.Helper()
	u, err := url.Parse(target)
	if err != nil {
		t.Fatalf("starting fault proxy: parsing target %q: %v", target, err)
	}
	p := &FaultProxy{
		rng:   rand.New(rand.NewPCG(cfg.Seed, cfg.Seed^0x9e3779b97f4a7c15)),
		rate:  cfg.Rate,
		delay: cfg.MaxDelay,
	}
	if p.delay <= 0 {
		p.delay = 50 * time.Millisecond
	}
	if cfg.Weights == nil {
		cfg.Weights = map[Fault]int{FaultSlowDown: 1, FaultInternalError: 1, FaultReset: 1, FaultDelay: 1}
	}
	for f, w := range cfg.Weights {
		if f < 0 || f >= numFaults || w < 0 {
			t.Fatalf("starting fault proxy: bad weight %d for %v", w, f)
		}
		p.weights[f] = w
		p.total += w
	}
	if p.total == 0 {
		t.Fatalf("starting fault proxy: all weights are zero")
	}
	p.proxy = &httputil.ReverseProxy{
		ErrorLog: log.New(io.Discard, "", 0), // the faults are the point
		Rewrite: func(r *httputil.ProxyRequest) {
			r.SetURL(u)
			r.Out.Host = r.In.Host
		},
		ModifyResponse: func(resp *http.Response) error {
			ctx := resp.Request.Context()
			if ctx.Value(loseReplyKey{}) != nil {
				_, _ = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				return errLoseReply
			}
			if ctx.Value(cutBodyKey{}) != nil && resp.Request.Method == http.MethodGet && resp.ContentLength >= 2 {
				p.counts[FaultCutBody].Add(1)
				resp.Body = &cutReader{ReadCloser: resp.Body, left: resp.ContentLength / 2}
			}
			return nil
		},
		ErrorHandler: func(w http.ResponseWriter, r *http.Request, err error) {
			if errors.Is(err, errLoseReply) {
				reset(w)
				return
			}
			http.Error(w, err.Error(), http.StatusBadGateway)
		},
	}
	srv := httptest.NewServer(http.HandlerFunc(p.serve))
	t.Cleanup(srv.Close)
	p.URL = srv.URL
	return p
}

// SetRate changes the fraction of faulted requests; 0 turns faults off.
func (p *FaultProxy) SetRate(rate float64) {
	p.mu.Lock()
	p.rate = rate
	p.mu.Unlock()
}

// Requests is how many requests reached the proxy.
func (p *FaultProxy) Requests() int64 { return p.requests.Load() }

// Count is how many faults of kind f were injected.
func (p *FaultProxy) Count(f Fault) int64 { return p.counts[f].Load() }

// Injected is how many faults of any kind were injected.
func (p *FaultProxy) Injected() int64 {
	var n int64
	for f := range numFaults {
		n += p.counts[f].Load()
	}
	return n
}

// Summary describes the counters, for test logs.
func (p *FaultProxy) Summary() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%d requests", p.Requests())
	for f := range numFaults {
		fmt.Fprintf(&b, ", %s %d", f, p.Count(f))
	}
	return b.String()
}

// decide picks the fault for one request, or -1 for none, and the delay
// of a FaultDelay.
func (p *FaultProxy) decide() (Fault, time.Duration) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.rng.Float64() >= p.rate {
		return -1, 0
	}
	n := p.rng.IntN(p.total)
	f := Fault(0)
	for ; f < numFaults; f++ {
		if n < p.weights[f] {
			break
		}
		n -= p.weights[f]
	}
	return f, time.Duration(p.rng.Int64N(int64(p.delay) + 1))
}

func (p *FaultProxy) serve(w http.ResponseWriter, r *http.Request) {
	p.requests.Add(1)
	f, delay := p.decide()
	if f >= 0 && f != FaultCutBody {
		p.counts[f].Add(1)
	}
	switch f {
	case FaultSlowDown:
		_, _ = io.Copy(io.Discard, r.Body)
		s3Error(w, http.StatusServiceUnavailable, "SlowDown", "Please reduce your request rate.")
		return
	case FaultInternalError:
		_, _ = io.Copy(io.Discard, r.Body)
		s3Error(w, http.StatusInternalServerError, "InternalError", "We encountered an internal error. Please try again.")
		return
	case FaultReset:
		reset(w)
		return
	case FaultDelay:
		t := time.NewTimer(delay)
		select {
		case <-t.C:
		case <-r.Context().Done():
			t.Stop()
			return
		}
	case FaultLoseReply:
		r = r.WithContext(context.WithValue(r.Context(), loseReplyKey{}, true))
	case FaultCutBody:
		r = r.WithContext(context.WithValue(r.Context(), cutBodyKey{}, true))
	}
	p.proxy.ServeHTTP(w, r)
}

func s3Error(w http.ResponseWriter, status int, code, msg string) {
	w.Header().Set("Content-Type", "application/xml")
	w.Header().Set("Connection", "close")
	w.WriteHeader(status)
	fmt.Fprintf(w, `<?xml version="1.0" encoding="UTF-8"?>`+"\n"+
		`<Error><Code>%s</Code><Message>%s</Message><RequestId>faultproxy</RequestId></Error>`, code, msg)
}

// reset closes the client's connection with a TCP RST (linger 0), with no
// reply.
func reset(w http.ResponseWriter) {
	hj, ok := w.(http.Hijacker)
	if !ok {
		panic("faultproxy: response writer cannot be hijacked")
	}
	conn, _, err := hj.Hijack()
	if err != nil {
		return
	}
	if tc, ok := conn.(*net.TCPConn); ok {
		_ = tc.SetLinger(0)
	}
	conn.Close()
}

// cutReader fails after left bytes; the reverse proxy then aborts the
// reply mid-body, closing the client's connection.
type cutReader struct {
	io.ReadCloser
	left int64
}

var errCutBody = errors.New("faultproxy: cutting the body")

func (c *cutReader) Read(p []byte) (int, error) {
	if c.left <= 0 {
		return 0, errCutBody
	}
	if int64(len(p)) > c.left {
		p = p[:c.left]
	}
	n, err := c.ReadCloser.Read(p)
	c.left -= int64(n)
	return n, err
}
