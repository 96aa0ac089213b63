package server

import (
	"context"
	"errors"
	"fmt"
	"io"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	"github.com/cairnbackup/cairn/core/hlc"
	"github.com/cairnbackup/cairn/core/jobs"
	"github.com/cairnbackup/cairn/core/server/serverpb"
)

// Client talks to a running node's gateway service (cairn ... --host).
type Client struct {
	conn *grpc.ClientConn
	gw   serverpb.GatewayClient
}

// Dial returns a client of the node at addr; creds nil means plaintext.
// Nothing is sent until the first call. The caller must Close it.
func Dial(addr string, creds credentials.TransportCredentials) (*Client, error) {
	if creds == nil {
		creds = insecure.NewCredentials()
	}
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(creds),
		grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(64<<20)))
	if err != nil {
		return nil, fmt.Errorf("dialing %s: %w", addr, err)
	}
	return &Client{conn: conn, gw: serverpb.NewGatewayClient(conn)}, nil
}

// Close closes the connection.
func (c *Client) Close() error { return c.conn.Close() }

// remoteErr turns a gRPC status into a plain error with the server's
// message.
func remoteErr(err error) error {
	if err == nil {
		return nil
	}
	if s, ok := status.FromError(err); ok {
		return errors.New(s.Message())
	}
	return err
}

// Exec runs one statement on the node, calling onProgress (when not nil)
// for each progress update of an attached job. As with Server.Exec, a
// result can come with an error (a job that failed).
func (c *Client) Exec(ctx context.Context, stmt, user string, onProgress func(jobs.Record)) (*Result, error) {
	stream, err := c.gw.Exec(ctx, &serverpb.ExecRequest{Statement: stmt, User: user})
	if err != nil {
		return nil, remoteErr(err)
	}
	for {
		resp, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			return nil, errors.New("executing statement: the node sent no result")
		}
		if err != nil {
			return nil, remoteErr(err)
		}
		if p := resp.Progress; p != nil && onProgress != nil {
			onProgress(jobs.Record{ID: p.JobId, State: jobs.State(p.State), Fraction: p.Fraction})
		}
		if resp.Result != nil || resp.Error != "" {
			res := resultFromPB(resp.Result)
			if resp.Error != "" {
				return res, errors.New(resp.Error)
			}
			return res, nil
		}
	}
}

// Workload runs a workload operation on the node, calling onProgress with
// the bytes loaded so far, and returns the last message.
func (c *Client) Workload(ctx context.Context, req *serverpb.WorkloadRequest, onProgress func(int64)) (*serverpb.WorkloadResponse, error) {
	stream, err := c.gw.Workload(ctx, req)
	if err != nil {
		return nil, remoteErr(err)
	}
	for {
		resp, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			return nil, errors.New("running workload: the node sent no result")
		}
		if err != nil {
			return nil, remoteErr(err)
		}
		if resp.Done {
			return resp, nil
		}
		if onProgress != nil {
			onProgress(resp.BytesDone)
		}
	}
}

// Fingerprint fingerprints database db at ts (zero: now on the node).
func (c *Client) Fingerprint(ctx context.Context, db string, ts hlc.Timestamp) (*serverpb.FingerprintResponse, error) {
	resp, err := c.gw.Fingerprint(ctx, &serverpb.FingerprintRequest{Database: db, WallTime: ts.WallTime, Logical: ts.Logical})
	return resp, remoteErr(err)
}

// Status lists the cluster's nodes as the node sees them.
func (c *Client) Status(ctx context.Context) (*serverpb.StatusResponse, error) {
	resp, err := c.gw.Status(ctx, &serverpb.StatusRequest{})
	return resp, remoteErr(err)
}

// Drain drains the node (see Node.Drain).
func (c *Client) Drain(ctx context.Context) (*serverpb.DrainResponse, error) {
	resp, err := c.gw.Drain(ctx, &serverpb.DrainRequest{})
	return resp, remoteErr(err)
}
