package etcdutil

import (
	"context"
	"fmt"
	"log/slog"
	"net/url"

	"go.etcd.io/etcd/server/v3/embed"
	"go.uber.org/zap"
)

// MemberConfig configures one member of a (possibly multi-member) embedded
// etcd cluster, as `cairn start --etcd-name ... --etcd-initial-cluster ...`
// runs it.
type MemberConfig struct {
	// Name is the member's name in InitialCluster.
	Name string
	// Dir holds the member's data; a member restarts from it.
	Dir string
	// ClientAddr and PeerAddr are host:port to listen on; empty picks free
	// ports on 127.0.0.1 (only sensible for a single-member cluster).
	ClientAddr, PeerAddr string
	// InitialCluster is "name=http://host:peerport,..." over every member;
	// empty means a single-member cluster of this member alone.
	InitialCluster string
	Logger         *slog.Logger
}

// StartMember starts one embedded etcd member and returns once the cluster
// it belongs to serves requests (which, for a member of several, needs a
// quorum of them started), with a client connected to this member. The
// caller must Close the returned Server.
func StartMember(ctx context.Context, cfg MemberConfig) (*Server, error) {
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Name == "" {
		cfg.Name = "cairn"
	}
	if cfg.ClientAddr == "" || cfg.PeerAddr == "" {
		ports, err := freePorts(2)
		if err != nil {
			return nil, fmt.Errorf("choosing ports for embedded etcd: %w", err)
		}
		if cfg.ClientAddr == "" {
			cfg.ClientAddr = fmt.Sprintf("127.0.0.1:%d", ports[0])
		}
		if cfg.PeerAddr == "" {
			cfg.PeerAddr = fmt.Sprintf("127.0.0.1:%d", ports[1])
		}
	}
	clientURL := url.URL{Scheme: "http", Host: cfg.ClientAddr}
	peerURL := url.URL{Scheme: "http", Host: cfg.PeerAddr}

	ec := embed.NewConfig()
	ec.Name = cfg.Name
	ec.Dir = cfg.Dir
	ec.ListenClientUrls = []url.URL{clientURL}
	ec.AdvertiseClientUrls = []url.URL{clientURL}
	ec.ListenPeerUrls = []url.URL{peerURL}
	ec.AdvertisePeerUrls = []url.URL{peerURL}
	ec.InitialCluster = cfg.InitialCluster
	if ec.InitialCluster == "" {
		ec.InitialCluster = ec.InitialClusterFromName(ec.Name)
	}
	ec.InitialClusterToken = "cairn"
	ec.LogLevel = "warn"
	ec.ZapLoggerBuilder = embed.NewZapLoggerBuilder(zap.New(newSlogCore(cfg.Logger.With("component", "etcd"), zap.WarnLevel)))

	e, err := embed.StartEtcd(ec)
	if err != nil {
		return nil, fmt.Errorf("starting etcd member %s in %s: %w", cfg.Name, cfg.Dir, err)
	}
	readyCtx, cancel := context.WithTimeout(ctx, readyTimeout)
	defer cancel()
	select {
	case <-e.Server.ReadyNotify():
	case err := <-e.Err():
		e.Close()
		return nil, fmt.Errorf("starting etcd member %s in %s: %w", cfg.Name, cfg.Dir, err)
	case <-readyCtx.Done():
		e.Close()
		return nil, fmt.Errorf("waiting for etcd member %s to join a quorum: %w", cfg.Name, readyCtx.Err())
	}
	endpoints := []string{clientURL.String()}
	cli, err := Connect(ctx, endpoints)
	if err != nil {
		e.Close()
		return nil, err
	}
	return &Server{Client: cli, Endpoints: endpoints, etcd: e}, nil
}
