package plugin

import (
	"context"
	"fmt"
	"time"

	goplugin "github.com/hashicorp/go-plugin"
	"google.golang.org/grpc"

	"github.com/cairnbackup/cairn/sdk/internal/pb/pluginpb"
)

// describeName is the go-plugin name of the Describe service, which every
// cairn plugin serves.
const describeName = "describe"

type describePlugin struct {
	goplugin.NetRPCUnsupportedPlugin
	info Info
}

var _ goplugin.GRPCPlugin = (*describePlugin)(nil)

func (p *describePlugin) GRPCServer(_ *goplugin.GRPCBroker, s *grpc.Server) error {
	pluginpb.RegisterPluginServer(s, &describeServer{info: p.info})
	return nil
}

func (p *describePlugin) GRPCClient(_ context.Context, _ *goplugin.GRPCBroker, conn *grpc.ClientConn) (any, error) {
	return pluginpb.NewPluginClient(conn), nil
}

type describeServer struct {
	pluginpb.UnimplementedPluginServer
	info Info
}

var _ pluginpb.PluginServer = (*describeServer)(nil)

func (s *describeServer) Describe(context.Context, *pluginpb.DescribeRequest) (*pluginpb.DescribeResponse, error) {
	i := s.info
	resp := &pluginpb.DescribeResponse{
		Name: i.Name, Version: i.Version, Kinds: i.Kinds, Schemes: i.Schemes,
		Capabilities: i.Capabilities, Policies: i.Policies,
	}
	for _, p := range i.Protocols {
		resp.Protocols = append(resp.Protocols, int32(p))
	}
	return resp, nil
}

// DescribeTimeout bounds Describe when its context has no deadline.
const DescribeTimeout = 30 * time.Second

// Describe asks a started (or startable) plugin client what it serves.
func Describe(ctx context.Context, client *goplugin.Client) (Info, error) {
	rpc, err := client.Client()
	if err != nil {
		return Info{}, fmt.Errorf("starting plugin: %w", err)
	}
	raw, err := rpc.Dispense(describeName)
	if err != nil {
		return Info{}, fmt.Errorf("dispensing the describe service: %w", err)
	}
	pc, ok := raw.(pluginpb.PluginClient)
	if !ok {
		return Info{}, fmt.Errorf("dispensing the describe service: got %T", raw)
	}
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, DescribeTimeout)
		defer cancel()
	}
	resp, err := pc.Describe(ctx, &pluginpb.DescribeRequest{})
	if err != nil {
		return Info{}, fmt.Errorf("describing plugin: %w", err)
	}
	info := Info{
		Name: resp.Name, Version: resp.Version, Kinds: resp.Kinds, Schemes: resp.Schemes,
		Capabilities: resp.Capabilities, Policies: resp.Policies,
	}
	for _, p := range resp.Protocols {
		info.Protocols = append(info.Protocols, int(p))
	}
	return info, nil
}
