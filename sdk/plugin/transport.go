package plugin

import "google.golang.org/grpc"

// tuning sizes gRPC's HTTP/2 windows and buffers for 1 MiB data messages
// on a local socket. gRPC's defaults (64 KiB windows grown by BDP
// probing, 32 KiB buffers) are made for networks and stall a bulk stream
// between two processes on a round trip per window.
type tuning struct {
	window, connWindow int32
	buffer             int
}

var transportTuning = tuning{window: 8 << 20, connWindow: 32 << 20, buffer: 1 << 20}

func (t tuning) dial() []grpc.DialOption {
	return []grpc.DialOption{
		grpc.WithInitialWindowSize(t.window),
		grpc.WithInitialConnWindowSize(t.connWindow),
		grpc.WithWriteBufferSize(t.buffer),
		grpc.WithReadBufferSize(t.buffer),
	}
}

func (t tuning) server() []grpc.ServerOption {
	return []grpc.ServerOption{
		grpc.InitialWindowSize(t.window),
		grpc.InitialConnWindowSize(t.connWindow),
		grpc.WriteBufferSize(t.buffer),
		grpc.ReadBufferSize(t.buffer),
	}
}
