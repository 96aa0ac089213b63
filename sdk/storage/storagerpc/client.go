package storagerpc

import (
	"context"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"os"
	"path/filepath"
	"sync"
	"time"

	"google.golang.org/grpc"

	"github.com/cairnbackup/cairn/sdk/internal/pb/storagepb"
	"github.com/cairnbackup/cairn/sdk/storage"
)

// DefaultCallTimeout bounds a unary call whose context has no deadline.
const DefaultCallTimeout = time.Minute

// Client is the host side of the storage protocol: a storage.Provider
// whose stores live in the plugin process. It is safe for concurrent use.
type Client struct {
	rpc         storagepb.StorageClient
	schemes     []string
	callTimeout time.Duration
}

var _ storage.Provider = (*Client)(nil)

// NewClient talks to the storage service on conn.
func NewClient(conn grpc.ClientConnInterface) *Client {
	return &Client{rpc: storagepb.NewStorageClient(conn), callTimeout: DefaultCallTimeout}
}

// WithSchemes returns a copy of c whose Schemes are schemes (the host
// learns them from Describe).
func (c *Client) WithSchemes(schemes []string) *Client {
	cc := *c
	cc.schemes = append([]string(nil), schemes...)
	return &cc
}

// WithCallTimeout returns a copy of c that bounds unary calls whose
// context has no deadline by d.
func (c *Client) WithCallTimeout(d time.Duration) *Client {
	cc := *c
	if d > 0 {
		cc.callTimeout = d
	}
	return &cc
}

// Schemes implements storage.Provider.
func (c *Client) Schemes() []string { return c.schemes }

func (c *Client) unary(ctx context.Context) (context.Context, context.CancelFunc) {
	if _, ok := ctx.Deadline(); ok {
		return ctx, func() {}
	}
	return context.WithTimeout(ctx, c.callTimeout)
}

// Open implements storage.Provider.
func (c *Client) Open(ctx context.Context, uri string) (storage.Store, error) {
	return c.OpenStore(ctx, uri)
}

// OpenStore is Open returning the concrete type.
func (c *Client) OpenStore(ctx context.Context, uri string) (*Store, error) {
	ctx, cancel := c.unary(ctx)
	defer cancel()
	resp, err := c.rpc.Open(ctx, &storagepb.OpenRequest{Uri: uri})
	if err != nil {
		return nil, FromStatus(err)
	}
	return &Store{c: c, handle: resp.Handle}, nil
}

// Store is a store opened in the plugin.
type Store struct {
	c      *Client
	handle uint64
}

var _ storage.Store = (*Store)(nil)

// Stat implements storage.Store.
func (s *Store) Stat(ctx context.Context, name string) (storage.ObjectInfo, error) {
	ctx, cancel := s.c.unary(ctx)
	defer cancel()
	resp, err := s.c.rpc.Stat(ctx, &storagepb.StatRequest{Handle: s.handle, Name: name})
	if err != nil {
		return storage.ObjectInfo{}, FromStatus(err)
	}
	return infoFromPB(resp.Info), nil
}

// List implements storage.Store. The stream is bound by ctx.
func (s *Store) List(ctx context.Context, opts storage.ListOptions, fn func(storage.ObjectInfo) error) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stream, err := s.c.rpc.List(ctx, &storagepb.ListRequest{
		Handle: s.handle, Prefix: opts.Prefix, Delimiter: opts.Delimiter, StartAfter: opts.StartAfter,
	})
	if err != nil {
		return FromStatus(err)
	}
	for {
		page, err := stream.Recv()
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return FromStatus(err)
		}
		for _, e := range page.Entries {
			if err := fn(infoFromPB(e)); err != nil {
				return err
			}
		}
	}
}

// Read implements storage.Store. It waits for the plugin's first message,
// so a missing object fails here; the rest streams as the caller reads.
// The stream is bound by ctx; Close ends it.
func (s *Store) Read(ctx context.Context, name string, offset, length int64) (io.ReadCloser, error) {
	ctx, cancel := context.WithCancel(ctx)
	stream, err := s.c.rpc.Read(ctx, &storagepb.ReadRequest{Handle: s.handle, Name: name, Offset: offset, Length: length})
	if err != nil {
		cancel()
		return nil, FromStatus(err)
	}
	first, err := stream.Recv()
	if err == io.EOF {
		cancel()
		return io.NopCloser(eofReader{}), nil
	}
	if err != nil {
		cancel()
		return nil, FromStatus(err)
	}
	return &reader{stream: stream, cancel: cancel, buf: first.Data}, nil
}

type eofReader struct{}

func (eofReader) Read([]byte) (int, error) { return 0, io.EOF }

type reader struct {
	stream storagepb.Storage_ReadClient
	cancel context.CancelFunc
	buf    []byte
	err    error
}

func (r *reader) Read(p []byte) (int, error) {
	for len(r.buf) == 0 {
		if r.err != nil {
			return 0, r.err
		}
		msg, err := r.stream.Recv()
		if err == io.EOF {
			r.err = io.EOF
			r.cancel()
			continue
		}
		if err != nil {
			r.err = FromStatus(err)
			r.cancel()
			continue
		}
		r.buf = msg.Data
	}
	n := copy(p, r.buf)
	r.buf = r.buf[n:]
	return n, nil
}

func (r *reader) Close() error {
	r.cancel()
	if r.err == nil {
		r.err = errors.New("reading a closed reader")
	}
	r.buf = nil
	return nil
}

// Write implements storage.Store. Bytes go out in ChunkSize messages; the
// stream, and so the write, is bound by ctx up to Close.
func (s *Store) Write(ctx context.Context, name string, opts storage.WriteOptions) (storage.Writer, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	ctx, cancel := context.WithCancel(ctx)
	stream, err := s.c.rpc.Write(ctx)
	if err != nil {
		cancel()
		return nil, FromStatus(err)
	}
	w := &writer{ctx: ctx, stream: stream, cancel: cancel}
	w.send(&storagepb.WriteRequest{Part: &storagepb.WriteRequest_Header_{Header: &storagepb.WriteRequest_Header{
		Handle: s.handle, Name: name, IfNotExists: opts.IfNotExists,
	}}})
	return w, nil
}

type writer struct {
	ctx    context.Context
	stream storagepb.Storage_WriteClient
	cancel context.CancelFunc
	crc    uint32
	size   int64
	buf    []byte
	err    error // sticky
	done   bool
	once   sync.Once
}

// send sends m; when the stream is broken, the status comes from
// CloseAndRecv and sticks.
func (w *writer) send(m *storagepb.WriteRequest) {
	if w.err != nil {
		return
	}
	if err := w.stream.Send(m); err != nil {
		if err == io.EOF {
			_, err = w.stream.CloseAndRecv()
			if err == nil {
				err = errors.New("storage plugin ended the write stream early")
			}
		}
		w.err = FromStatus(err)
	}
}

func (w *writer) sendData(p []byte) {
	w.send(&storagepb.WriteRequest{Part: &storagepb.WriteRequest_Data{Data: p}})
}

func (w *writer) Write(p []byte) (int, error) {
	if w.done {
		return 0, errors.New("writing to a closed writer")
	}
	if w.err != nil {
		return 0, w.err
	}
	w.crc = crc32.Update(w.crc, castagnoli, p)
	w.size += int64(len(p))
	n := len(p)
	for len(p) > 0 && w.err == nil {
		if len(w.buf) == 0 && len(p) >= ChunkSize {
			// Whole chunks go out from the caller's slice, uncopied:
			// Send marshals before it returns.
			w.sendData(p[:ChunkSize])
			p = p[ChunkSize:]
			continue
		}
		if w.buf == nil {
			w.buf = make([]byte, 0, ChunkSize)
		}
		k := min(len(p), ChunkSize-len(w.buf))
		w.buf = append(w.buf, p[:k]...)
		p = p[k:]
		if len(w.buf) == ChunkSize {
			w.sendData(w.buf)
			w.buf = w.buf[:0]
		}
	}
	if w.err != nil {
		return 0, w.err
	}
	return n, nil
}

// Close sends what is buffered and the trailer, and waits for the commit.
func (w *writer) Close() error {
	if w.done {
		return w.err
	}
	w.done = true
	defer w.cancel()
	if len(w.buf) > 0 {
		w.sendData(w.buf)
		w.buf = nil
	}
	if w.err == nil {
		if err := w.ctx.Err(); err != nil {
			w.err = fmt.Errorf("committing a write: %w", err)
			return w.err
		}
	}
	w.send(&storagepb.WriteRequest{Part: &storagepb.WriteRequest_Trailer_{Trailer: &storagepb.WriteRequest_Trailer{Crc32C: w.crc, Size: w.size}}})
	if w.err != nil {
		return w.err
	}
	if _, err := w.stream.CloseAndRecv(); err != nil {
		w.err = FromStatus(err)
	}
	return w.err
}

// Abort ends the stream without a trailer and waits for the plugin to
// discard the write.
func (w *writer) Abort() error {
	if w.done {
		return nil
	}
	w.done = true
	defer w.cancel()
	if w.err == nil {
		_, _ = w.stream.CloseAndRecv() // the plugin answers Aborted
	}
	w.buf = nil
	return nil
}

// FileWrite is a whole object handed to the plugin at once (the
// WriteFile call): its bytes are in the local file Path, or in Data when
// Path is empty.
type FileWrite struct {
	Name string
	Path string
	Data []byte
	// Size is the object's length; the plugin checks the file against it.
	Size int64
	// CRC32C, when not nil, is the CRC-32C (Castagnoli) of the bytes,
	// checked by a plugin that reads them.
	CRC32C *uint32
	Opts   storage.WriteOptions
}

// PutFile commits fw in the plugin. A plugin that does not serve the call,
// or cannot see fw.Path, answers an error wrapping
// storage.ErrUnimplemented: stream the bytes with Write instead. The call
// is bound by ctx only (a large file takes as long as it takes).
func (s *Store) PutFile(ctx context.Context, fw FileWrite) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	_, err := s.c.rpc.WriteFile(ctx, &storagepb.WriteFileRequest{
		Handle: s.handle, Name: fw.Name, IfNotExists: fw.Opts.IfNotExists,
		Path: fw.Path, Data: fw.Data, Size: fw.Size, Crc32C: fw.CRC32C,
	})
	return FromStatus(err)
}

// WriteFile implements storage.FileWriter: the plugin takes the file
// from path (made absolute), or, when it cannot, the bytes are streamed.
func (s *Store) WriteFile(ctx context.Context, name, path string, opts storage.WriteOptions) error {
	abs, err := filepath.Abs(path)
	if err != nil {
		return fmt.Errorf("writing %s from %s: %w", name, path, err)
	}
	fi, err := os.Stat(abs)
	if err != nil {
		return storage.CopyFile(ctx, s, name, abs, opts) // names the error as a write would
	}
	err = s.PutFile(ctx, FileWrite{Name: name, Path: abs, Size: fi.Size(), Opts: opts})
	if errors.Is(err, storage.ErrUnimplemented) {
		return storage.CopyFile(ctx, s, name, abs, opts)
	}
	return err
}

// GetFile has the plugin create the file path (absolute, not existing)
// holding the whole object, and returns its size. A plugin that does not
// serve the call, or cannot create the file, answers an error wrapping
// storage.ErrUnimplemented: read with Read instead. Bound by ctx only.
func (s *Store) GetFile(ctx context.Context, name, path string) (int64, error) {
	if err := ctx.Err(); err != nil {
		return 0, err
	}
	resp, err := s.c.rpc.ReadFile(ctx, &storagepb.ReadFileRequest{Handle: s.handle, Name: name, Path: path})
	if err != nil {
		return 0, FromStatus(err)
	}
	return resp.Size, nil
}

// ReadFile implements storage.FileReader: the plugin creates the file
// (path made absolute), or, when it cannot, the object is read with Read.
func (s *Store) ReadFile(ctx context.Context, name, path string) (int64, error) {
	abs, err := filepath.Abs(path)
	if err != nil {
		return 0, fmt.Errorf("reading %s into %s: %w", name, path, err)
	}
	n, err := s.GetFile(ctx, name, abs)
	if errors.Is(err, storage.ErrUnimplemented) {
		return storage.CopyToFile(ctx, s, name, abs)
	}
	return n, err
}

// Delete implements storage.Store.
func (s *Store) Delete(ctx context.Context, name string) error {
	ctx, cancel := s.c.unary(ctx)
	defer cancel()
	_, err := s.c.rpc.Delete(ctx, &storagepb.DeleteRequest{Handle: s.handle, Name: name})
	return FromStatus(err)
}

// Close implements storage.Store: it releases the handle in the plugin.
func (s *Store) Close() error {
	ctx, cancel := s.c.unary(context.Background())
	defer cancel()
	_, err := s.c.rpc.Close(ctx, &storagepb.CloseRequest{Handle: s.handle})
	return FromStatus(err)
}
