// Package etcdutil starts embedded etcd members and connects clients to etcd.
//
// The reference cluster keeps its control plane (jobs, liveness, catalog) in
// etcd; tests and `cairn demo` run a single embedded member through
// StartEmbedded, while `cairn start --etcd-endpoints` connects to an external
// cluster through Connect.
package etcdutil

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/url"
	"strings"
	"sync"
	"syscall"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/server/v3/embed"
	"go.uber.org/zap"
)

// startAttempts bounds the retries after a port collision: the ports are
// chosen free, but another process may bind them before etcd does.
const startAttempts = 8

// readyTimeout bounds the wait for a freshly started member to serve.
const readyTimeout = 30 * time.Second

// Server is a running single-member embedded etcd and a client connected to
// it. The Server owns both; Close releases them.
type Server struct {
	// Client is connected to the member; it is closed by Close.
	Client *clientv3.Client
	// Endpoints are the member's client URLs, for other clients (nodes in
	// the same process) to Connect to.
	Endpoints []string

	etcd      *embed.Etcd
	closeOnce sync.Once
	closeErr  error
}

// StartEmbedded starts a single-member etcd whose data lives in dir, listening
// on 127.0.0.1 on free ports, and returns once it serves requests, with a
// connected client. etcd's own logging goes to logger at warn level and above.
// If dir already holds the data of a member, that member restarts with it.
// The caller must Close the returned Server.
func StartEmbedded(ctx context.Context, dir string, logger *slog.Logger) (*Server, error) {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	var lastErr error
	for range startAttempts {
		s, err := startOnce(ctx, dir, logger)
		if err == nil {
			return s, nil
		}
		if !isAddrInUse(err) {
			return nil, err
		}
		lastErr = err
		logger.Debug("etcd port collision, retrying with other ports", "err", err)
	}
	return nil, fmt.Errorf("starting embedded etcd in %s: %w", dir, lastErr)
}

func startOnce(ctx context.Context, dir string, logger *slog.Logger) (*Server, error) {
	ports, err := freePorts(2)
	if err != nil {
		return nil, fmt.Errorf("choosing ports for embedded etcd: %w", err)
	}
	clientURL := url.URL{Scheme: "http", Host: fmt.Sprintf("127.0.0.1:%d", ports[0])}
	peerURL := url.URL{Scheme: "http", Host: fmt.Sprintf("127.0.0.1:%d", ports[1])}

	cfg := embed.NewConfig()
	cfg.Name = "cairn"
	cfg.Dir = dir
	cfg.ListenClientUrls = []url.URL{clientURL}
	cfg.AdvertiseClientUrls = []url.URL{clientURL}
	cfg.ListenPeerUrls = []url.URL{peerURL}
	cfg.AdvertisePeerUrls = []url.URL{peerURL}
	cfg.InitialCluster = cfg.InitialClusterFromName(cfg.Name)
	cfg.LogLevel = "warn"
	cfg.ZapLoggerBuilder = embed.NewZapLoggerBuilder(zap.New(newSlogCore(logger.With("component", "etcd"), zap.WarnLevel)))

	e, err := embed.StartEtcd(cfg)
	if err != nil {
		return nil, err
	}
	readyCtx, cancel := context.WithTimeout(ctx, readyTimeout)
	defer cancel()
	select {
	case <-e.Server.ReadyNotify():
	case err := <-e.Err():
		e.Close()
		return nil, fmt.Errorf("starting embedded etcd in %s: %w", dir, err)
	case <-readyCtx.Done():
		e.Close()
		return nil, fmt.Errorf("waiting for embedded etcd in %s to be ready: %w", dir, readyCtx.Err())
	}

	endpoints := []string{clientURL.String()}
	cli, err := Connect(ctx, endpoints)
	if err != nil {
		e.Close()
		return nil, err
	}
	return &Server{Client: cli, Endpoints: endpoints, etcd: e}, nil
}

// Close closes the client and stops the member. It is safe to call more
// than once; later calls return the first call's result.
func (s *Server) Close() error {
	s.closeOnce.Do(func() {
		if s.Client != nil {
			if err := s.Client.Close(); err != nil && !errors.Is(err, context.Canceled) {
				s.closeErr = fmt.Errorf("closing etcd client: %w", err)
			}
		}
		if s.etcd != nil {
			s.etcd.Close()
		}
	})
	return s.closeErr
}

// Connect returns a client for the etcd cluster at endpoints, after checking
// that the cluster answers within ctx. The caller closes the client.
func Connect(ctx context.Context, endpoints []string) (*clientv3.Client, error) {
	if len(endpoints) == 0 {
		return nil, errors.New("connecting to etcd: no endpoints")
	}
	cli, err := clientv3.New(clientv3.Config{
		Endpoints:   endpoints,
		DialTimeout: 5 * time.Second,
		Logger:      zap.NewNop(),
		Context:     context.WithoutCancel(ctx),
	})
	if err != nil {
		return nil, fmt.Errorf("connecting to etcd at %s: %w", strings.Join(endpoints, ","), err)
	}
	// A read proves the cluster serves requests (clientv3.New does not).
	pingCtx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if _, err := cli.Get(pingCtx, "health-check-by-cairn", clientv3.WithCountOnly()); err != nil {
		cli.Close()
		return nil, fmt.Errorf("connecting to etcd at %s: %w", strings.Join(endpoints, ","), err)
	}
	return cli, nil
}

// freePorts returns n distinct TCP ports on 127.0.0.1 that were free a
// moment ago. All listeners are held until every port is chosen so that the
// ports differ.
func freePorts(n int) ([]int, error) {
	ports := make([]int, 0, n)
	var ls []net.Listener
	defer func() {
		for _, l := range ls {
			l.Close()
		}
	}()
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, err
		}
		ls = append(ls, l)
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
	}
	return ports, nil
}

func isAddrInUse(err error) bool {
	// etcd does not always keep the syscall error in its chain.
	return errors.Is(err, syscall.EADDRINUSE) || strings.Contains(err.Error(), "address already in use")
}
