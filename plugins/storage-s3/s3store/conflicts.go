package s3store

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/smithy-go/middleware"
	smithyhttp "github.com/aws/smithy-go/transport/http"

	"github.com/cairnbackup/cairn/sdk/storage"
)

// MinIO keeps an object "a" as a directory "a/" holding its metadata, and
// its listings never look below an object: with objects "a" and "a/b",
// "a/b" can be read but is listed by no listing at all, not even of
// prefix "a/". An object a listing cannot see is one that garbage
// collection deletes and restore misses, so on MinIO the store behaves
// like a file system instead: a write fails with ErrAlreadyExists when an
// ancestor of its key is an object, or when its key is the prefix of
// other objects followed by "/". The check is made just before the
// commit and is not atomic with it; cairn never writes such pairs, so it
// is a guard against silent loss, not a lock.
//
// The server is recognised by the Server header of its replies; until a
// successful reply has been seen the check runs, so the first write of a
// store on any server pays for it once.

type serverKind int32

const (
	serverUnknown serverKind = iota
	serverMinIO
	serverOther
)

// serverSniffer records which server answers, from the Server header.
type serverSniffer struct{ kind atomic.Int32 }

func (s *serverSniffer) get() serverKind { return serverKind(s.kind.Load()) }

// middleware returns the API option that watches replies.
func (s *serverSniffer) middleware(stack *middleware.Stack) error {
	return stack.Deserialize.Add(middleware.DeserializeMiddlewareFunc("cairnServerSniffer",
		func(ctx context.Context, in middleware.DeserializeInput, next middleware.DeserializeHandler) (middleware.DeserializeOutput, middleware.Metadata, error) {
			out, md, err := next.HandleDeserialize(ctx, in)
			if resp, ok := out.RawResponse.(*smithyhttp.Response); ok && resp != nil {
				switch {
				case strings.HasPrefix(resp.Header.Get("Server"), "MinIO"):
					s.kind.Store(int32(serverMinIO))
				case resp.StatusCode/100 == 2:
					// Error replies may come from a proxy in between.
					s.kind.CompareAndSwap(int32(serverUnknown), int32(serverOther))
				}
			}
			return out, md, err
		}), middleware.After)
}

// checkConflicts returns ErrAlreadyExists when writing name would make an
// object that is also a directory, on servers that cannot list those.
func (s *Store) checkConflicts(ctx context.Context, name string) error {
	if s.sniffer.get() == serverOther {
		return nil
	}
	key := s.key(name)
	var (
		wg       sync.WaitGroup
		mu       sync.Mutex
		conflict string
		firstErr error
	)
	report := func(c string, err error) {
		mu.Lock()
		defer mu.Unlock()
		if c != "" && conflict == "" {
			conflict = c
		}
		if err != nil && firstErr == nil {
			firstErr = err
		}
	}
	for i := range len(key) {
		if key[i] != '/' {
			continue
		}
		ancestor := key[:i]
		wg.Go(func() {
			_, err := s.client.HeadObject(ctx, &s3.HeadObjectInput{Bucket: aws.String(s.cfg.Bucket), Key: aws.String(ancestor)})
			switch {
			case err == nil:
				report(fmt.Sprintf("object %q exists where a directory is needed", ancestor), nil)
			case httpStatus(err) != 404:
				report("", s.errorf("checking for an object above", name, err))
			}
		})
	}
	wg.Go(func() {
		out, err := s.client.ListObjectsV2(ctx, &s3.ListObjectsV2Input{
			Bucket: aws.String(s.cfg.Bucket), Prefix: aws.String(key + "/"), MaxKeys: aws.Int32(1),
		})
		switch {
		case err != nil:
			report("", s.errorf("checking for objects below", name, err))
		case len(out.Contents) > 0:
			report(fmt.Sprintf("objects exist below %q", key+"/"), nil)
		}
	})
	wg.Wait()
	if s.sniffer.get() != serverMinIO {
		// Another server, or none answered well enough to tell: a
		// restrictive policy may refuse HEAD above the store's root, and
		// that must not fail writes on servers that need no check.
		return nil
	}
	if conflict != "" {
		return fmt.Errorf("writing %s: %s, and this server cannot list an object that is also a directory: %w",
			s.where(name), conflict, storage.ErrAlreadyExists)
	}
	return firstErr
}
