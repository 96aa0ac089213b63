package collection

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"runtime"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cairnbackup/cairn/core/hlc"
	"github.com/cairnbackup/cairn/core/manifest"
	"github.com/cairnbackup/cairn/core/manifest/manifestpb"
	"github.com/cairnbackup/cairn/internal/storagefake"
	"github.com/cairnbackup/cairn/sdk/storage"
)

const sub = "2026/11/24-004726.00"

func TestSubdirFor(t *testing.T) {
	for _, tc := range []struct {
		in   time.Time
		want string
	}{
		{time.Date(2026, 11, 24, 0, 47, 26, 0, time.UTC), "2026/11/24-004726.00"},
		{time.Date(2026, 11, 24, 0, 47, 26, 999_999_999, time.UTC), "2026/11/24-004726.99"},
		{time.Date(2026, 1, 2, 3, 4, 5, 70_000_000, time.UTC), "2026/01/02-030405.07"},
		{time.Date(2026, 11, 24, 1, 47, 26, 0, time.FixedZone("CET", 3600)), "2026/11/24-004726.00"},
	} {
		got := SubdirFor(tc.in)
		if got != tc.want {
			t.Errorf("SubdirFor(%v) = %q, want %q", tc.in, got, tc.want)
		}
		if err := ValidateSubdir(got); err != nil {
			t.Errorf("ValidateSubdir(SubdirFor(%v)): %v", tc.in, err)
		}
	}
}

func TestValidateSubdir(t *testing.T) {
	for _, ok := range []string{sub, "/" + sub, "2000/02/29-235959.99"} {
		if err := ValidateSubdir(ok); err != nil {
			t.Errorf("ValidateSubdir(%q): %v", ok, err)
		}
	}
	for _, bad := range []string{
		"", "/", "..", "2026/11/24-004726", "2026/11/24-004726.000", "2026/11/24", "2026/11/24-004726.00/",
		"2026/11/24-004726.00/..", "../2026/11/24-004726.00", "2026/11/24-004726.00/data",
		"//2026/11/24-004726.00", "2026/13/24-004726.00", "2026/02/30-004726.00", "2026/11/24-254726.00",
		"2026-11-24-004726.00", "2026\\11\\24-004726.00", "LATEST", " 2026/11/24-004726.00",
	} {
		err := ValidateSubdir(bad)
		if !errors.Is(err, storage.ErrInvalidArgument) {
			t.Errorf("ValidateSubdir(%q) = %v, want invalid argument", bad, err)
		} else if !strings.Contains(err.Error(), fmt.Sprintf("%q", bad)) {
			t.Errorf("ValidateSubdir(%q): error %q does not name the input", bad, err)
		}
	}
}

func TestPaths(t *testing.T) {
	if got := DataPath(3, "0001"); got != "data/3-0001.sst" {
		t.Errorf("DataPath = %q", got)
	}
	if got := IncrementalsDir("/" + sub); got != "incrementals/"+sub {
		t.Errorf("IncrementalsDir = %q", got)
	}
	if got := LockName(sub, 7); got != sub+"/BACKUP-LOCK-7" {
		t.Errorf("LockName = %q", got)
	}
}

func TestLatest(t *testing.T) {
	ctx := context.Background()
	s := storagefake.New()
	if _, err := ReadLatest(ctx, s); !errors.Is(err, ErrNoBackups) {
		t.Fatalf("empty collection: got %v, want ErrNoBackups", err)
	}
	if _, err := ResolveSubdir(ctx, s, "", true); !errors.Is(err, ErrNoBackups) {
		t.Fatalf("ResolveSubdir LATEST on empty collection: got %v, want ErrNoBackups", err)
	}
	base := time.Date(2026, 11, 24, 0, 0, 0, 0, time.UTC)
	subs := []string{"2026/11/24-000000.00", "2026/11/25-000000.00", "2026/11/26-000000.00"}
	for i, sd := range subs {
		if err := WriteLatest(ctx, s, sd, base.Add(time.Duration(i)*time.Hour)); err != nil {
			t.Fatal(err)
		}
	}
	got, err := ReadLatest(ctx, s)
	if err != nil || got != subs[2] {
		t.Fatalf("ReadLatest = %q, %v; want %q", got, err, subs[2])
	}
	if got, err := ResolveSubdir(ctx, s, "ignored", true); err != nil || got != subs[2] {
		t.Fatalf("ResolveSubdir LATEST = %q, %v", got, err)
	}
	// Idempotent for the same pointer, refused for a different one.
	if err := WriteLatest(ctx, s, "/"+subs[2], base.Add(2*time.Hour)); err != nil {
		t.Fatalf("rewriting the same pointer: %v", err)
	}
	if err := WriteLatest(ctx, s, subs[0], base.Add(2*time.Hour)); !errors.Is(err, storage.ErrAlreadyExists) {
		t.Fatalf("overwriting a pointer: got %v, want ErrAlreadyExists", err)
	}
	if err := WriteLatest(ctx, s, "../etc", base.Add(3*time.Hour)); !errors.Is(err, storage.ErrInvalidArgument) {
		t.Fatalf("bad subdir: got %v, want ErrInvalidArgument", err)
	}
	if got, _ := ReadLatest(ctx, s); got != subs[2] {
		t.Fatalf("after refused writes ReadLatest = %q", got)
	}
}

func TestReadLatestSkipsBadPointers(t *testing.T) {
	ctx := context.Background()
	s := storagefake.New()
	base := time.Date(2026, 11, 24, 0, 0, 0, 0, time.UTC)
	if err := WriteLatest(ctx, s, sub, base); err != nil {
		t.Fatal(err)
	}
	// More bad pointers than one listing batch, all newer than the good one.
	for i := 1; i <= 2*latestBatch+3; i++ {
		s.Put(LatestPrefix+manifest.DescTS(base.Add(time.Duration(i)*time.Second)), []byte("../../elsewhere"))
	}
	s.Put(LatestPrefix+"garbage", []byte("2030/01/01-000000.00"))
	got, err := ReadLatest(ctx, s)
	if err != nil || got != sub {
		t.Fatalf("ReadLatest = %q, %v; want %q", got, err, sub)
	}
	s.FailRead = func(string) error { return storage.ErrUnavailable }
	if _, err := ReadLatest(ctx, s); !errors.Is(err, storage.ErrUnavailable) {
		t.Fatalf("store error: got %v, want ErrUnavailable", err)
	}
}

func TestResolveSubdirExplicit(t *testing.T) {
	s := storagefake.New()
	got, err := ResolveSubdir(context.Background(), s, "/"+sub, false)
	if err != nil || got != sub {
		t.Fatalf("ResolveSubdir = %q, %v", got, err)
	}
	if _, err := ResolveSubdir(context.Background(), s, sub+"/../x", false); !errors.Is(err, storage.ErrInvalidArgument) {
		t.Fatalf("got %v, want ErrInvalidArgument", err)
	}
}

func writeManifest(t *testing.T, s storage.Store, dir string, end time.Time) {
	t.Helper()
	sum := sha256.Sum256(nil)
	m := &manifestpb.BackupManifest{
		BackupId:      "id-" + dir,
		FormatVersion: manifest.FormatVersion,
		EndTime:       &manifestpb.Timestamp{WallTime: end.UnixNano(), Logical: 1},
		Spans:         []*manifestpb.Span{{Key: []byte("a"), EndKey: []byte("b")}},
		Files: []*manifestpb.File{{
			Span: &manifestpb.Span{Key: []byte("a"), EndKey: []byte("b")},
			Path: DataPath(1, "x"), Sha256: sum[:],
		}},
		Dir: dir,
	}
	if err := manifest.WriteManifest(context.Background(), s, dir, m); err != nil {
		t.Fatal(err)
	}
}

func TestLock(t *testing.T) {
	ctx := context.Background()
	s := storagefake.New()
	if err := AcquireLock(ctx, s, sub, 1); err != nil {
		t.Fatal(err)
	}
	if err := AcquireLock(ctx, s, sub, 1); err != nil {
		t.Fatalf("re-acquiring by the same job: %v", err)
	}
	err := AcquireLock(ctx, s, sub, 2)
	if !errors.Is(err, ErrLocked) || !strings.Contains(err.Error(), "job 1 holds "+sub+"/BACKUP-LOCK-1") {
		t.Fatalf("second job: got %v, want ErrLocked naming job 1", err)
	}
	if _, ok := s.Get(LockName(sub, 2)); ok {
		t.Fatal("refused job left its lock behind")
	}
	if _, ok := s.Get(LockName(sub, 1)); !ok {
		t.Fatal("refused job removed the holder's lock")
	}
	if err := ReleaseLock(ctx, s, sub, 1); err != nil {
		t.Fatal(err)
	}
	if err := ReleaseLock(ctx, s, sub, 1); err != nil {
		t.Fatalf("releasing twice: %v", err)
	}
	if err := AcquireLock(ctx, s, sub, 2); err != nil {
		t.Fatalf("after release: %v", err)
	}

	// A completed backup refuses every job, even the lock holder.
	writeManifest(t, s, sub, time.Unix(1795999646, 0))
	err = AcquireLock(ctx, s, sub, 2)
	if !errors.Is(err, storage.ErrAlreadyExists) || !strings.Contains(err.Error(), "a backup already exists in "+sub) {
		t.Fatalf("completed dir: got %v", err)
	}
}

func TestLockRefusesBadInput(t *testing.T) {
	ctx := context.Background()
	s := storagefake.New()
	for _, dir := range []string{"", "/abs", "a/../b", "a/"} {
		if err := AcquireLock(ctx, s, dir, 1); !errors.Is(err, storage.ErrInvalidArgument) {
			t.Errorf("AcquireLock(%q): got %v, want ErrInvalidArgument", dir, err)
		}
	}
	if err := AcquireLock(ctx, s, sub, 0); !errors.Is(err, storage.ErrInvalidArgument) {
		t.Errorf("job id 0: got %v", err)
	}
	s.Put(sub+"/BACKUP-LOCK-someone", nil)
	if err := AcquireLock(ctx, s, sub, 5); !errors.Is(err, ErrLocked) || !strings.Contains(err.Error(), "BACKUP-LOCK-someone") {
		t.Errorf("unrecognized lock: got %v", err)
	}
	if n := s.Names(); !slices.Equal(n, []string{sub + "/BACKUP-LOCK-someone"}) {
		t.Errorf("store holds %q", n)
	}
}

// TestLockLaterListerWins: job 1 writes its lock, then job 2 runs
// completely (sees job 1, is refused, removes its lock); job 1 then lists
// and wins.
func TestLockLaterListerWins(t *testing.T) {
	ctx := context.Background()
	s := storagefake.New()
	var errB error
	s.BeforeList = func(storage.ListOptions) {
		s.BeforeList = nil
		errB = AcquireLock(ctx, s, sub, 2)
	}
	if err := AcquireLock(ctx, s, sub, 1); err != nil {
		t.Fatalf("job 1: %v", err)
	}
	if !errors.Is(errB, ErrLocked) || !strings.Contains(errB.Error(), "job 1 holds") {
		t.Fatalf("job 2: got %v, want ErrLocked naming job 1", errB)
	}
	if n := s.Names(); !slices.Equal(n, []string{LockName(sub, 1)}) {
		t.Fatalf("store holds %q", n)
	}
}

// TestLockBothRefused runs the worst interleaving deterministically: both
// jobs write their locks, then both list before either removes its lock.
// Both are refused and nothing is left behind.
func TestLockBothRefused(t *testing.T) {
	ctx := context.Background()
	s := storagefake.New()
	var mu sync.Mutex
	lists, deletes := 0, 0
	bAtList, aListed, bListed := make(chan struct{}), make(chan struct{}), make(chan struct{})
	var errB error
	bDone := make(chan struct{})
	// wait keeps a broken implementation from hanging the test.
	wait := func(ch chan struct{}) {
		select {
		case <-ch:
		case <-time.After(5 * time.Second):
			t.Error("interleaving stuck: AcquireLock did not list or delete where expected")
		}
	}
	s.BeforeList = func(storage.ListOptions) {
		mu.Lock()
		lists++
		n := lists
		mu.Unlock()
		switch n {
		case 1: // job 1, lock written: let job 2 write its lock and reach its listing.
			go func() {
				defer close(bDone)
				errB = AcquireLock(ctx, s, sub, 2)
			}()
			wait(bAtList)
		case 2: // job 2: list only once job 1 has listed.
			close(bAtList)
			wait(aListed)
		}
	}
	s.BeforeDelete = func(string) {
		mu.Lock()
		deletes++
		n := deletes
		mu.Unlock()
		switch n {
		case 1: // job 1 was refused; hold its lock until job 2 has listed.
			close(aListed)
			wait(bListed)
		case 2:
			close(bListed)
		}
	}
	errA := AcquireLock(ctx, s, sub, 1)
	wait(bDone)
	if !errors.Is(errA, ErrLocked) || !errors.Is(errB, ErrLocked) {
		t.Fatalf("got %v and %v, want both ErrLocked", errA, errB)
	}
	if n := s.Names(); len(n) != 0 {
		t.Fatalf("refused jobs left %q", n)
	}
}

// TestLockCompletedInBetween: a job that held the lock writes its manifest
// and releases the lock while another is acquiring.
func TestLockCompletedInBetween(t *testing.T) {
	ctx := context.Background()
	s := storagefake.New()
	if err := AcquireLock(ctx, s, sub, 1); err != nil {
		t.Fatal(err)
	}
	s.BeforeList = func(storage.ListOptions) {
		s.BeforeList = nil
		writeManifest(t, s, sub, time.Unix(1795999646, 0))
		if err := ReleaseLock(ctx, s, sub, 1); err != nil {
			t.Error(err)
		}
	}
	err := AcquireLock(ctx, s, sub, 2)
	if !errors.Is(err, storage.ErrAlreadyExists) {
		t.Fatalf("got %v, want ErrAlreadyExists", err)
	}
	if _, ok := s.Get(LockName(sub, 2)); ok {
		t.Fatal("refused job left its lock behind")
	}
}

func TestLockRace(t *testing.T) {
	const rounds, jobs = 200, 6
	var wins [jobs + 1]int
	for r := 0; r < rounds; r++ {
		s := storagefake.New()
		s.BeforeList = func(storage.ListOptions) { runtime.Gosched() }
		start := make(chan struct{})
		var wg sync.WaitGroup
		var mu sync.Mutex
		var winners []int64
		for j := int64(1); j <= jobs; j++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				<-start
				err := AcquireLock(context.Background(), s, sub, j)
				switch {
				case err == nil:
					mu.Lock()
					winners = append(winners, j)
					mu.Unlock()
				case !errors.Is(err, ErrLocked):
					t.Errorf("job %d: %v", j, err)
				}
			}()
		}
		close(start)
		wg.Wait()
		if len(winners) > 1 {
			t.Fatalf("round %d: jobs %v all acquired the lock", r, winners)
		}
		wins[len(winners)]++
		// Exactly the winner's lock is left.
		var want []string
		for _, w := range winners {
			want = append(want, LockName(sub, w))
		}
		if got := s.Names(); !slices.Equal(got, want) {
			t.Fatalf("round %d: store holds %q, want %q", r, got, want)
		}
	}
	t.Logf("rounds with 0 winners: %d, with 1: %d", wins[0], wins[1])
}

func TestListBackups(t *testing.T) {
	ctx := context.Background()
	s := storagefake.New()
	complete := []string{"2025/01/01-000000.00", "2026/11/24-004726.00", "2026/11/24-120000.50", "2026/12/01-000000.00"}
	for _, d := range complete {
		writeManifest(t, s, d, time.Unix(1795999646, 0))
		s.Put(d+"/"+DataPath(1, "a"), []byte("sst"))
	}
	incomplete := []string{"2026/11/25-000000.00", "2027/01/01-000000.00"}
	for _, d := range incomplete {
		s.Put(d+"/"+DataPath(2, "b"), []byte("sst"))
		s.Put(LockName(d, 9), nil)
	}
	// Noise that is not a full backup's subdirectory.
	for _, n := range []string{
		LatestPrefix + "0000000000000000001", "incrementals/2026/11/24-004726.00/20261124/x/BACKUP_MANIFEST",
		"2026/notamonth/24-004726.00/BACKUP_MANIFEST", "2026/11/garbage/BACKUP_MANIFEST",
		"2026/11/24-004726.00.bak/BACKUP_MANIFEST", "README", "2026/11/file",
	} {
		s.Put(n, []byte("x"))
	}

	s.ResetLists()
	got, err := ListBackups(ctx, s)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(got, complete) {
		t.Fatalf("ListBackups = %q, want %q", got, complete)
	}
	for _, l := range s.Lists() {
		if l.Delimiter != "/" || strings.Count(l.Prefix, "/") > 2 {
			t.Errorf("ListBackups listed %+v, deeper than a month or without delimiter", l)
		}
	}
	if len(s.Reads()) != 0 {
		t.Errorf("ListBackups read %q", s.Reads())
	}

	got, err = ListIncomplete(ctx, s)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(got, incomplete) {
		t.Fatalf("ListIncomplete = %q, want %q", got, incomplete)
	}

	empty, err := ListBackups(ctx, storagefake.New())
	if err != nil || len(empty) != 0 {
		t.Fatalf("empty collection: %q, %v", empty, err)
	}
}

func TestReadLayer(t *testing.T) {
	ctx := context.Background()
	s := storagefake.New()
	end := time.Unix(1795999646, 5)
	writeManifest(t, s, sub, end)
	l, err := ReadLayer(ctx, s, sub)
	if err != nil {
		t.Fatal(err)
	}
	want := Layer{Subdir: sub, Complete: true, BackupID: "id-" + sub, EndTime: hlc.Timestamp{WallTime: end.UnixNano(), Logical: 1}}
	if l != want {
		t.Fatalf("ReadLayer = %+v, want %+v", l, want)
	}
	l, err = ReadLayer(ctx, s, "2026/11/25-000000.00")
	if err != nil || l != (Layer{Subdir: "2026/11/25-000000.00"}) {
		t.Fatalf("incomplete layer: %+v, %v", l, err)
	}
	s.Put(sub+"/"+manifest.ManifestName, []byte("torn"))
	if _, err := ReadLayer(ctx, s, sub); !errors.Is(err, manifest.ErrCorrupt) {
		t.Fatalf("corrupt layer: got %v, want ErrCorrupt", err)
	}
}
