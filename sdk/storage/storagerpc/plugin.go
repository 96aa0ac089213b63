// Package storagerpc carries storage.Provider over gRPC between a plugin
// process and the host: Server is the plugin side (it calls a Provider
// and keeps opened stores by handle), Client the host side (a Provider
// and Stores that call the plugin), Plugin the go-plugin glue. Errors
// cross as gRPC codes with a storagepb.ErrorDetail, so the host sees the
// storage error kinds and the retryable flag (see ToStatus, FromStatus).
package storagerpc

import (
	"context"
	"log/slog"

	goplugin "github.com/hashicorp/go-plugin"
	"google.golang.org/grpc"

	"github.com/cairnbackup/cairn/sdk/internal/pb/storagepb"
	"github.com/cairnbackup/cairn/sdk/storage"
)

// Plugin is the "storage" kind in go-plugin's plugin set. A plugin sets
// Provider; the host leaves it nil and gets a *Client from Dispense.
type Plugin struct {
	goplugin.NetRPCUnsupportedPlugin
	Provider storage.Provider
	Logger   *slog.Logger
}

var _ goplugin.GRPCPlugin = (*Plugin)(nil)

// GRPCServer implements goplugin.GRPCPlugin.
func (p *Plugin) GRPCServer(_ *goplugin.GRPCBroker, s *grpc.Server) error {
	storagepb.RegisterStorageServer(s, NewServer(p.Provider, p.Logger))
	return nil
}

// GRPCClient implements goplugin.GRPCPlugin.
func (p *Plugin) GRPCClient(_ context.Context, _ *goplugin.GRPCBroker, conn *grpc.ClientConn) (any, error) {
	return NewClient(conn), nil
}
