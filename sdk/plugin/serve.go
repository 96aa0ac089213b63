package plugin

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"runtime/debug"
	"slices"
	"time"

	goplugin "github.com/hashicorp/go-plugin"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/cairnbackup/cairn/sdk/locality/localityrpc"
	"github.com/cairnbackup/cairn/sdk/storage/storagerpc"
)

// Serve serves cfg's kinds until the host stops the plugin, and is the
// whole of a plugin's main. A binary started by hand, without the
// handshake, says it is a plugin and exits. Serve also exits when the
// host process dies without stopping it, so no plugin outlives its host.
func Serve(cfg ServeConfig) {
	logger := cfg.Logger
	if logger == nil {
		// os.Stderr is captured here, before go-plugin redirects it: this
		// is the stream the host reads and re-logs.
		logger = NewJSONLogger(os.Stderr, slog.LevelInfo)
	}
	set := goplugin.PluginSet{describeName: &describePlugin{info: cfg.info()}}
	if cfg.Storage != nil {
		set[KindStorage] = &storagerpc.Plugin{Provider: cfg.Storage, Logger: logger}
	}
	if cfg.Matcher != nil {
		set[localityrpc.MatcherName] = localityrpc.NewMatcherPlugin(cfg.Matcher)
	}
	if len(cfg.Policies) > 0 {
		set[localityrpc.PolicyName] = localityrpc.NewPolicyPlugin(cfg.Policies)
	}
	if os.Getenv(Handshake.MagicCookieKey) == Handshake.MagicCookieValue {
		go exitWithParent(logger, os.Getppid())
	}
	goplugin.Serve(&goplugin.ServeConfig{
		HandshakeConfig:  Handshake,
		VersionedPlugins: map[int]goplugin.PluginSet{ProtocolVersion: set},
		GRPCServer: func(opts []grpc.ServerOption) *grpc.Server {
			opts = append(opts, transportTuning.server()...)
			opts = append(opts,
				grpc.ChainUnaryInterceptor(recoverUnary(logger)),
				grpc.ChainStreamInterceptor(recoverStream(logger)),
			)
			return grpc.NewServer(opts...)
		},
		Logger: NewHCLogger(logger),
	})
}

// info is what Describe answers.
func (cfg ServeConfig) info() Info {
	i := Info{Name: cfg.Name, Version: cfg.Version, Protocols: []int{ProtocolVersion}}
	if cfg.Storage != nil {
		i.Kinds = append(i.Kinds, KindStorage)
		i.Schemes = slices.Clone(cfg.Storage.Schemes())
		i.Capabilities = slices.Clone(cfg.Capabilities)
		// The SDK's server serves WriteFile and ReadFile for every store.
		for _, c := range []string{CapabilityWriteFile, CapabilityReadFile} {
			if !slices.Contains(i.Capabilities, c) {
				i.Capabilities = append(i.Capabilities, c)
			}
		}
	}
	if cfg.Matcher != nil {
		i.Kinds = append(i.Kinds, KindLocalityMatcher)
	}
	if len(cfg.Policies) > 0 {
		i.Kinds = append(i.Kinds, KindExecutionPolicy)
		for _, p := range cfg.Policies {
			i.Policies = append(i.Policies, p.Name())
		}
	}
	return i
}

// parentPollInterval is how often a plugin checks that its host lives.
// go-plugin gives a plugin no signal when the host dies (its stdin is the
// host's stdin, not a pipe), so the plugin watches its parent process id:
// when the host dies, the plugin is re-parented and exits.
const parentPollInterval = 250 * time.Millisecond

func exitWithParent(logger *slog.Logger, ppid int) {
	t := time.NewTicker(parentPollInterval)
	defer t.Stop()
	for range t.C {
		if os.Getppid() != ppid {
			logger.Warn("host process is gone; exiting", "host_pid", ppid)
			os.Exit(3)
		}
	}
}

// panicError turns a recovered panic into the error the host receives,
// with the stack, and logs it.
func panicError(logger *slog.Logger, method string, r any) error {
	stack := debug.Stack()
	logger.Error("plugin panicked", "method", method, "panic", fmt.Sprint(r), "stack", string(stack))
	s := status.New(codes.Internal, fmt.Sprintf("plugin panicked in %s: %v\n%s", method, r, stack))
	return storagerpc.WithDetail(s, "", false).Err()
}

func recoverUnary(logger *slog.Logger) grpc.UnaryServerInterceptor {
	return func(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (resp any, err error) {
		defer func() {
			if r := recover(); r != nil {
				resp, err = nil, panicError(logger, info.FullMethod, r)
			}
		}()
		return handler(ctx, req)
	}
}

func recoverStream(logger *slog.Logger) grpc.StreamServerInterceptor {
	return func(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) (err error) {
		defer func() {
			if r := recover(); r != nil {
				err = panicError(logger, info.FullMethod, r)
			}
		}()
		return handler(srv, ss)
	}
}
