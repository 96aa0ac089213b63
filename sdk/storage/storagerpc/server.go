package storagerpc

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/cairnbackup/cairn/sdk/internal/pb/storagepb"
	"github.com/cairnbackup/cairn/sdk/storage"
)

const (
	// ChunkSize is the size of the data messages of Read and Write: large
	// enough that the per-message cost vanishes against the copy, small
	// enough to stay far below gRPC's 4 MiB message limit.
	ChunkSize = 1 << 20
	// PageSize is the most entries a List message carries.
	PageSize = 1000
)

// Server is the plugin side of the storage protocol: it opens stores with
// a storage.Provider and keeps them by handle until Close.
type Server struct {
	storagepb.UnimplementedStorageServer
	provider storage.Provider
	logger   *slog.Logger

	mu     sync.Mutex
	next   uint64
	stores map[uint64]storage.Store
}

var _ storagepb.StorageServer = (*Server)(nil)

// NewServer serves p. logger may be nil.
func NewServer(p storage.Provider, logger *slog.Logger) *Server {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	return &Server{provider: p, logger: logger, stores: map[uint64]storage.Store{}}
}

func (s *Server) store(h uint64) (storage.Store, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	st, ok := s.stores[h]
	if !ok {
		return nil, ToStatus(fmt.Errorf("looking up store handle %d: no such handle (was the plugin restarted?): %w", h, storage.ErrInvalidArgument))
	}
	return st, nil
}

// Open implements storagepb.StorageServer.
func (s *Server) Open(ctx context.Context, req *storagepb.OpenRequest) (*storagepb.OpenResponse, error) {
	st, err := s.provider.Open(ctx, req.Uri)
	if err != nil {
		return nil, ToStatus(err)
	}
	s.mu.Lock()
	s.next++
	h := s.next
	s.stores[h] = st
	s.mu.Unlock()
	return &storagepb.OpenResponse{Handle: h}, nil
}

// Close implements storagepb.StorageServer. Closing an unknown handle is
// not an error, so the host may retry it.
func (s *Server) Close(ctx context.Context, req *storagepb.CloseRequest) (*storagepb.CloseResponse, error) {
	s.mu.Lock()
	st, ok := s.stores[req.Handle]
	delete(s.stores, req.Handle)
	s.mu.Unlock()
	if ok {
		if err := st.Close(); err != nil {
			return nil, ToStatus(err)
		}
	}
	return &storagepb.CloseResponse{}, nil
}

// CloseAll closes every open store; the plugin calls it on shutdown.
func (s *Server) CloseAll() {
	s.mu.Lock()
	stores := s.stores
	s.stores = map[uint64]storage.Store{}
	s.mu.Unlock()
	for h, st := range stores {
		if err := st.Close(); err != nil {
			s.logger.Warn("closing store", "handle", h, "error", err)
		}
	}
}

func infoToPB(o storage.ObjectInfo) *storagepb.ObjectInfo {
	pb := &storagepb.ObjectInfo{Name: o.Name, Size: o.Size, IsPrefix: o.IsPrefix}
	if !o.ModTime.IsZero() {
		pb.ModTimeUnixNano = o.ModTime.UnixNano()
	}
	return pb
}

func infoFromPB(pb *storagepb.ObjectInfo) storage.ObjectInfo {
	o := storage.ObjectInfo{Name: pb.GetName(), Size: pb.GetSize(), IsPrefix: pb.GetIsPrefix()}
	if pb.GetModTimeUnixNano() != 0 {
		o.ModTime = time.Unix(0, pb.GetModTimeUnixNano())
	}
	return o
}

// Stat implements storagepb.StorageServer.
func (s *Server) Stat(ctx context.Context, req *storagepb.StatRequest) (*storagepb.StatResponse, error) {
	st, err := s.store(req.Handle)
	if err != nil {
		return nil, err
	}
	info, err := st.Stat(ctx, req.Name)
	if err != nil {
		return nil, ToStatus(err)
	}
	return &storagepb.StatResponse{Info: infoToPB(info)}, nil
}

// List implements storagepb.StorageServer.
func (s *Server) List(req *storagepb.ListRequest, stream storagepb.Storage_ListServer) error {
	st, err := s.store(req.Handle)
	if err != nil {
		return err
	}
	page := make([]*storagepb.ObjectInfo, 0, PageSize)
	flush := func() error {
		if len(page) == 0 {
			return nil
		}
		err := stream.Send(&storagepb.ListResponse{Entries: page})
		page = page[:0]
		return err
	}
	err = st.List(stream.Context(), storage.ListOptions{
		Prefix: req.Prefix, Delimiter: req.Delimiter, StartAfter: req.StartAfter,
	}, func(o storage.ObjectInfo) error {
		page = append(page, infoToPB(o))
		if len(page) == PageSize {
			return flush()
		}
		return nil
	})
	if err == nil {
		err = flush()
	}
	return ToStatus(err)
}

// Read implements storagepb.StorageServer. The first message goes out as
// soon as the object is open, so the client sees ErrNotFound before any
// data; then one message per ChunkSize bytes.
func (s *Server) Read(req *storagepb.ReadRequest, stream storagepb.Storage_ReadServer) error {
	st, err := s.store(req.Handle)
	if err != nil {
		return err
	}
	r, err := st.Read(stream.Context(), req.Name, req.Offset, req.Length)
	if err != nil {
		return ToStatus(err)
	}
	defer r.Close()
	// The buffer is reused: gRPC marshals a message before SendMsg
	// returns (no stats handler holds on to it).
	buf := make([]byte, ChunkSize)
	for first := true; ; first = false {
		n, rerr := io.ReadFull(r, buf)
		if n > 0 || first {
			if err := stream.Send(&storagepb.ReadResponse{Data: buf[:n]}); err != nil {
				return err
			}
		}
		switch {
		case rerr == io.EOF || rerr == io.ErrUnexpectedEOF:
			return nil
		case rerr != nil:
			return ToStatus(rerr)
		}
	}
}

// Write implements storagepb.StorageServer: header, data, trailer. Unless
// the trailer arrives with the right checksum and the commit succeeds,
// the write is aborted.
func (s *Server) Write(stream storagepb.Storage_WriteServer) error {
	ctx := stream.Context()
	msg, err := stream.Recv()
	if err != nil {
		return err
	}
	hdr := msg.GetHeader()
	if hdr == nil {
		return ToStatus(fmt.Errorf("receiving a write: the stream does not start with a header: %w", storage.ErrInvalidArgument))
	}
	st, err := s.store(hdr.Handle)
	if err != nil {
		return err
	}
	w, err := st.Write(ctx, hdr.Name, storage.WriteOptions{IfNotExists: hdr.IfNotExists})
	if err != nil {
		return ToStatus(err)
	}
	committed := false
	defer func() {
		if !committed {
			if err := w.Abort(); err != nil {
				s.logger.Warn("aborting a write", "name", hdr.Name, "error", err)
			}
		}
	}()
	var crc uint32
	var size int64
	for {
		msg, err := stream.Recv()
		if err == io.EOF {
			return WithDetail(status.New(codes.Aborted, "write stream ended without a trailer; aborted"), "", false).Err()
		}
		if err != nil {
			return err
		}
		switch part := msg.Part.(type) {
		case *storagepb.WriteRequest_Data:
			crc = crc32.Update(crc, castagnoli, part.Data)
			size += int64(len(part.Data))
			if _, err := w.Write(part.Data); err != nil {
				return ToStatus(err)
			}
		case *storagepb.WriteRequest_Trailer_:
			if crc != part.Trailer.Crc32C || size != part.Trailer.Size {
				return ToStatus(fmt.Errorf("committing %s: received %d bytes with CRC-32C %08x, the sender sent %d with %08x: %w",
					hdr.Name, size, crc, part.Trailer.Size, part.Trailer.Crc32C, storage.ErrInvalidArgument))
			}
			committed = true
			if err := w.Close(); err != nil {
				return ToStatus(err)
			}
			return stream.SendAndClose(&storagepb.WriteResponse{Size: size})
		default:
			return ToStatus(errors.New("receiving a write: a second header"))
		}
	}
}

// Delete implements storagepb.StorageServer.
func (s *Server) Delete(ctx context.Context, req *storagepb.DeleteRequest) (*storagepb.DeleteResponse, error) {
	st, err := s.store(req.Handle)
	if err != nil {
		return nil, err
	}
	if err := st.Delete(ctx, req.Name); err != nil {
		return nil, ToStatus(err)
	}
	return &storagepb.DeleteResponse{}, nil
}

// WriteFile implements storagepb.StorageServer: the object's bytes are
// inline or in a file on this machine, which the store takes with its
// storage.FileWriter (a hard link, a parallel upload) or which is streamed
// into its Writer, checking the host's CRC-32C on the way.
func (s *Server) WriteFile(ctx context.Context, req *storagepb.WriteFileRequest) (*storagepb.WriteResponse, error) {
	st, err := s.store(req.Handle)
	if err != nil {
		return nil, err
	}
	opts := storage.WriteOptions{IfNotExists: req.IfNotExists}
	if req.Path == "" {
		if int64(len(req.Data)) != req.Size {
			return nil, ToStatus(fmt.Errorf("committing %s: received %d bytes, the sender sent %d: %w", req.Name, len(req.Data), req.Size, storage.ErrInvalidArgument))
		}
		if err := writeChecked(ctx, st, req.Name, bytes.NewReader(req.Data), req.Crc32C, opts); err != nil {
			return nil, ToStatus(err)
		}
		return &storagepb.WriteResponse{Size: req.Size}, nil
	}
	if !filepath.IsAbs(req.Path) {
		return nil, ToStatus(fmt.Errorf("committing %s: source file %q is not an absolute path: %w", req.Name, req.Path, storage.ErrInvalidArgument))
	}
	f, err := os.Open(req.Path)
	if err != nil {
		return nil, ToStatus(fmt.Errorf("committing %s: opening the host's file: %w", req.Name, fileOpenError(err)))
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, ToStatus(fmt.Errorf("committing %s: %w", req.Name, err))
	}
	if fi.Size() != req.Size || !fi.Mode().IsRegular() {
		return nil, ToStatus(fmt.Errorf("committing %s: the host's file %s holds %d bytes (mode %v), the host sent %d: %w",
			req.Name, req.Path, fi.Size(), fi.Mode(), req.Size, storage.ErrInvalidArgument))
	}
	if fw, ok := st.(storage.FileWriter); ok {
		err = fw.WriteFile(ctx, req.Name, req.Path, opts)
	} else {
		err = writeChecked(ctx, st, req.Name, f, req.Crc32C, opts)
	}
	if err != nil {
		return nil, ToStatus(err)
	}
	return &storagepb.WriteResponse{Size: req.Size}, nil
}

// writeChecked streams r into object name of st and commits it only when
// the bytes have CRC-32C want (when want is set).
func writeChecked(ctx context.Context, st storage.Store, name string, r io.Reader, want *uint32, opts storage.WriteOptions) error {
	w, err := st.Write(ctx, name, opts)
	if err != nil {
		return err
	}
	defer w.Abort()
	var crc uint32
	buf := make([]byte, ChunkSize)
	for {
		n, rerr := io.ReadFull(r, buf)
		if n > 0 {
			crc = crc32.Update(crc, castagnoli, buf[:n])
			if _, err := w.Write(buf[:n]); err != nil {
				return err
			}
		}
		if rerr == io.EOF || rerr == io.ErrUnexpectedEOF {
			break
		}
		if rerr != nil {
			return fmt.Errorf("committing %s: reading the host's file: %w", name, rerr)
		}
	}
	if want != nil && *want != crc {
		return fmt.Errorf("committing %s: the bytes have CRC-32C %08x, the sender sent %08x: %w", name, crc, *want, storage.ErrInvalidArgument)
	}
	return w.Close()
}

// fileOpenError classifies a failure to open the host's file: a plugin
// that cannot see it (a sandbox, another machine) answers Unimplemented,
// and the host streams instead.
func fileOpenError(err error) error {
	if errors.Is(err, fs.ErrNotExist) || errors.Is(err, fs.ErrPermission) {
		return fmt.Errorf("%w: %w", storage.ErrUnimplemented, err)
	}
	return err
}

// ReadFile implements storagepb.StorageServer: the whole object goes into
// the new file the host names, through the store's storage.FileReader
// (a hard link, a parallel download) or its Read.
func (s *Server) ReadFile(ctx context.Context, req *storagepb.ReadFileRequest) (*storagepb.ReadFileResponse, error) {
	st, err := s.store(req.Handle)
	if err != nil {
		return nil, err
	}
	if !filepath.IsAbs(req.Path) {
		return nil, ToStatus(fmt.Errorf("reading %s: target file %q is not an absolute path: %w", req.Name, req.Path, storage.ErrInvalidArgument))
	}
	// A plugin that cannot create files in the host's directory (a
	// sandbox) says so as Unimplemented, and the host streams instead.
	if fi, err := os.Stat(filepath.Dir(req.Path)); err != nil || !fi.IsDir() {
		return nil, ToStatus(fmt.Errorf("reading %s: the host's directory %s is not visible here: %w", req.Name, filepath.Dir(req.Path), storage.ErrUnimplemented))
	}
	n, err := storage.ReadFile(ctx, st, req.Name, req.Path)
	if err != nil {
		if errors.Is(err, fs.ErrPermission) && !errors.Is(err, storage.ErrNotFound) {
			err = fmt.Errorf("%w: %w", storage.ErrUnimplemented, err)
		}
		return nil, ToStatus(err)
	}
	return &storagepb.ReadFileResponse{Size: n}, nil
}
