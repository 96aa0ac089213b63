package manifest

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"math/rand/v2"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/klauspost/compress/zstd"
	"google.golang.org/protobuf/proto"

	"github.com/cairnbackup/cairn/core/manifest/manifestpb"
	"github.com/cairnbackup/cairn/internal/storagefake"
	"github.com/cairnbackup/cairn/sdk/storage"
)

const testDir = "2026/11/24-004726.00"

func sampleManifest() *manifestpb.BackupManifest {
	sum := sha256.Sum256([]byte("data"))
	return &manifestpb.BackupManifest{
		BackupId:      "0b3c6f7e-1d2a-4c5b-9e8f-7a6b5c4d3e2f",
		ClusterId:     "cluster-1",
		FormatVersion: FormatVersion,
		JobId:         42,
		EndTime:       &manifestpb.Timestamp{WallTime: 1795999646000000000, Logical: 3},
		MvccFilter:    manifestpb.MVCCFilter_LATEST,
		Spans:         []*manifestpb.Span{{Key: []byte("/Table/53"), EndKey: []byte("/Table/54")}},
		Databases:     []*manifestpb.DatabaseDescriptor{{Id: 50, Name: "movr"}},
		Tables: []*manifestpb.TableDescriptor{{
			Id: 53, ParentId: 50, Name: "users",
			Columns:    []*manifestpb.Column{{Name: "id", Type: "UUID"}, {Name: "city", Type: "STRING"}},
			PrimaryKey: []string{"city", "id"},
		}},
		Files: []*manifestpb.File{{
			Span:    &manifestpb.Span{Key: []byte("/Table/53"), EndKey: []byte("/Table/53/5")},
			Path:    "data/1-abc.sst",
			Entries: 10, LogicalBytes: 1000, Size: 400,
			Sha256:   sum[:],
			Locality: "default",
			NodeId:   1,
		}},
		Localities:  []string{"default"},
		Dir:         testDir,
		EntryCounts: &manifestpb.EntryCounts{Entries: 10, LogicalBytes: 1000},
		CreatedAt:   1795999647000000000,
	}
}

func TestEncodeDecodeRoundTrip(t *testing.T) {
	m := sampleManifest()
	data, err := Encode(m)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.HasPrefix(data, []byte(Magic)) {
		t.Fatalf("encoding does not start with %q", Magic)
	}
	got, err := DecodeManifest(data)
	if err != nil {
		t.Fatal(err)
	}
	if !proto.Equal(got, m) {
		t.Fatalf("round trip changed the manifest:\n got %v\nwant %v", got, m)
	}
	again, _ := Encode(m)
	if !bytes.Equal(again, data) {
		t.Fatal("Encode is not deterministic")
	}
}

func TestWriteReadManifest(t *testing.T) {
	ctx := context.Background()
	s := storagefake.New()
	m := sampleManifest()
	if err := WriteManifest(ctx, s, testDir, m); err != nil {
		t.Fatal(err)
	}
	name := testDir + "/" + ManifestName
	if want := []string{name + ChecksumSuffix, name}; !slices.Equal(s.Commits(), want) {
		t.Fatalf("commit order %q, want %q (checksum first)", s.Commits(), want)
	}
	got, err := ReadManifest(ctx, s, testDir)
	if err != nil {
		t.Fatal(err)
	}
	if !proto.Equal(got, m) {
		t.Fatalf("read back %v, want %v", got, m)
	}
	sum, _ := s.Get(name + ChecksumSuffix)
	data, _ := s.Get(name)
	if h := sha256.Sum256(data); string(sum) != hex.EncodeToString(h[:]) {
		t.Fatalf("checksum file %q is not the hex SHA-256 of the manifest", sum)
	}

	// A second write is refused and leaves both files as they were.
	m2 := sampleManifest()
	m2.JobId = 43
	err = WriteManifest(ctx, s, testDir, m2)
	if !errors.Is(err, storage.ErrAlreadyExists) {
		t.Fatalf("second WriteManifest: %v, want ErrAlreadyExists", err)
	}
	if sum2, _ := s.Get(name + ChecksumSuffix); !bytes.Equal(sum2, sum) {
		t.Fatal("refused write replaced the checksum file")
	}
	if _, err := ReadManifest(ctx, s, testDir); err != nil {
		t.Fatalf("manifest unreadable after a refused write: %v", err)
	}
}

func TestWriteManifestRefusesInvalid(t *testing.T) {
	s := storagefake.New()
	m := sampleManifest()
	m.EndTime = nil
	err := WriteManifest(context.Background(), s, testDir, m)
	if !errors.Is(err, storage.ErrInvalidArgument) || !strings.Contains(err.Error(), "end_time") {
		t.Fatalf("got %v, want invalid argument naming end_time", err)
	}
	if n := s.Names(); len(n) != 0 {
		t.Fatalf("invalid manifest left %q", n)
	}
}

func TestReadManifestMissing(t *testing.T) {
	_, err := ReadManifest(context.Background(), storagefake.New(), testDir)
	if !errors.Is(err, ErrNoManifest) || !errors.Is(err, storage.ErrNotFound) {
		t.Fatalf("got %v, want ErrNoManifest and ErrNotFound", err)
	}
	if errors.Is(err, ErrCorrupt) {
		t.Fatalf("missing manifest reported as corrupt: %v", err)
	}
	if want := "reading " + testDir + "/BACKUP_MANIFEST: "; !strings.HasPrefix(err.Error(), want) {
		t.Fatalf("error %q does not start with %q", err, want)
	}
}

func TestReadManifestPassesStoreErrors(t *testing.T) {
	ctx := context.Background()
	s := storagefake.New()
	if err := WriteManifest(ctx, s, testDir, sampleManifest()); err != nil {
		t.Fatal(err)
	}
	s.FailRead = func(string) error { return fmt.Errorf("flaky: %w", storage.ErrUnavailable) }
	_, err := ReadManifest(ctx, s, testDir)
	if !errors.Is(err, storage.ErrUnavailable) || errors.Is(err, ErrCorrupt) || errors.Is(err, ErrNoManifest) {
		t.Fatalf("got %v, want only ErrUnavailable", err)
	}
}

// putEncoded stores data as dir's manifest with a matching checksum file.
func putEncoded(s *storagefake.Store, data []byte) {
	sum := sha256.Sum256(data)
	s.Put(testDir+"/"+ManifestName, data)
	s.Put(testDir+"/"+ManifestName+ChecksumSuffix, []byte(hex.EncodeToString(sum[:])))
}

func TestReadManifestCorrupt(t *testing.T) {
	name := testDir + "/" + ManifestName
	good, err := Encode(sampleManifest())
	if err != nil {
		t.Fatal(err)
	}
	zstdOf := func(b []byte) []byte {
		e, _ := zstd.NewWriter(nil)
		return e.EncodeAll(b, nil)
	}
	for _, tc := range []struct {
		name     string
		mutate   func(s *storagefake.Store)
		file     string // the file the error must name
		contains string
	}{
		{"flipped byte", func(s *storagefake.Store) {
			b := bytes.Clone(good)
			b[len(b)/2] ^= 0x01
			s.Put(name, b)
		}, name, "checksum mismatch"},
		{"truncated", func(s *storagefake.Store) { s.Put(name, good[:len(good)-5]) }, name, "checksum mismatch"},
		{"missing checksum", func(s *storagefake.Store) { s.Delete(context.Background(), name+ChecksumSuffix) },
			name, "BACKUP_MANIFEST-CHECKSUM is missing"},
		{"garbage checksum", func(s *storagefake.Store) { s.Put(name+ChecksumSuffix, []byte("not hex")) },
			name + ChecksumSuffix, "hex SHA-256"},
		{"wrong magic", func(s *storagefake.Store) {
			b := bytes.Clone(good)
			copy(b, "CAIRNMF9")
			putEncoded(s, b)
		}, name, "bad magic"},
		{"empty", func(s *storagefake.Store) { putEncoded(s, nil) }, name, "bad magic"},
		{"not zstd", func(s *storagefake.Store) { putEncoded(s, append([]byte(Magic), "hello world"...)) }, name, "decompressing"},
		{"bad proto", func(s *storagefake.Store) {
			putEncoded(s, append([]byte(Magic), zstdOf([]byte{0xff, 0xff, 0xff})...))
		}, name, "unmarshaling BackupManifest"},
		{"path with dotdot", func(s *storagefake.Store) {
			m := sampleManifest()
			m.Files[0].Path = "data/../../etc/passwd"
			b, _ := Encode(m)
			putEncoded(s, b)
		}, name, `files[0]: path "data/../../etc/passwd" is not a clean relative path`},
		{"future format", func(s *storagefake.Store) {
			m := sampleManifest()
			m.FormatVersion = 9
			b, _ := Encode(m)
			putEncoded(s, b)
		}, name, "format_version 9 is unknown"},
		{"short checksum in file", func(s *storagefake.Store) {
			m := sampleManifest()
			m.Files[0].Sha256 = []byte{1, 2, 3}
			b, _ := Encode(m)
			putEncoded(s, b)
		}, name, "sha256 has 3 bytes, want 32"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx := context.Background()
			s := storagefake.New()
			if err := WriteManifest(ctx, s, testDir, sampleManifest()); err != nil {
				t.Fatal(err)
			}
			tc.mutate(s)
			_, err := ReadManifest(ctx, s, testDir)
			if !errors.Is(err, ErrCorrupt) {
				t.Fatalf("got %v, want ErrCorrupt", err)
			}
			if errors.Is(err, ErrNoManifest) {
				t.Fatalf("corrupt manifest reported as missing: %v", err)
			}
			if !strings.HasPrefix(err.Error(), "reading "+tc.file+": ") {
				t.Fatalf("error %q does not name %s first", err, tc.file)
			}
			if !strings.Contains(err.Error(), tc.contains) {
				t.Fatalf("error %q does not contain %q", err, tc.contains)
			}
		})
	}
}

func TestValidate(t *testing.T) {
	for _, tc := range []struct {
		mutate func(m *manifestpb.BackupManifest)
		want   string // "" for valid
	}{
		{func(m *manifestpb.BackupManifest) {}, ""},
		{func(m *manifestpb.BackupManifest) { m.StartTime = &manifestpb.Timestamp{WallTime: 5} }, ""},
		{func(m *manifestpb.BackupManifest) { m.FormatVersion = 0 }, "format_version 0 is unknown"},
		{func(m *manifestpb.BackupManifest) { m.BackupId = "" }, "backup_id is empty"},
		{func(m *manifestpb.BackupManifest) { m.EndTime = &manifestpb.Timestamp{} }, "end_time is not set"},
		{func(m *manifestpb.BackupManifest) { m.StartTime = proto.CloneOf(m.EndTime) }, "is not before end_time"},
		{func(m *manifestpb.BackupManifest) { m.MvccFilter = 7 }, "mvcc_filter 7 is unknown"},
		{func(m *manifestpb.BackupManifest) {
			m.Spans = append(m.Spans, &manifestpb.Span{Key: []byte("b"), EndKey: []byte("a")})
		}, `spans[1] ["b", "a") is empty or inverted`},
		{func(m *manifestpb.BackupManifest) {
			m.IntroducedSpans = []*manifestpb.Span{{Key: []byte("a")}}
		}, "introduced_spans[0] [\"a\", \"\") has no end_key"},
		{func(m *manifestpb.BackupManifest) { m.Databases[0].Name = "" }, "databases[0] (id 50): name is empty"},
		{func(m *manifestpb.BackupManifest) { m.Tables[0].Id = 50 }, "tables[0]: id 50 appears twice"},
		{func(m *manifestpb.BackupManifest) { m.Tables[0].ParentId = 0 }, "tables[0] (users): parent_id is zero"},
		{func(m *manifestpb.BackupManifest) { m.Files[0].Path = "/abs.sst" }, `path "/abs.sst" is not a clean`},
		{func(m *manifestpb.BackupManifest) { m.Files[0].Path = "data//x.sst" }, "not a clean"},
		{func(m *manifestpb.BackupManifest) { m.Files[0].Path = "" }, "not a clean"},
		{func(m *manifestpb.BackupManifest) { m.Files[0].Span = nil }, "files[0] (data/1-abc.sst): span is not set"},
		{func(m *manifestpb.BackupManifest) { m.Files[0].Size = -1 }, "negative count"},
		{func(m *manifestpb.BackupManifest) { m.Localities = []string{""} }, "localities[0] is empty"},
		{func(m *manifestpb.BackupManifest) { m.Dir = "../x" }, `dir "../x" is not a clean relative path`},
		{func(m *manifestpb.BackupManifest) { m.EntryCounts.Entries = -3 }, "entry_counts"},
	} {
		m := sampleManifest()
		tc.mutate(m)
		err := Validate(m)
		switch {
		case tc.want == "" && err != nil:
			t.Errorf("Validate: unexpected %v", err)
		case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
			t.Errorf("Validate: got %v, want an error containing %q", err, tc.want)
		}
	}
}

func TestDecodeSizeCap(t *testing.T) {
	m := sampleManifest()
	for i := 0; i < 100; i++ {
		m.Localities = append(m.Localities, strings.Repeat("region=x", 10))
	}
	data, err := Encode(m)
	if err != nil {
		t.Fatal(err)
	}
	raw, _ := proto.Marshal(m)
	var into manifestpb.BackupManifest
	if err := decode(data, &into, int64(len(raw))); err != nil {
		t.Fatalf("decoding at exactly the cap: %v", err)
	}
	err = decode(data, &into, int64(len(raw))-1)
	if !errors.Is(err, ErrCorrupt) || !strings.Contains(err.Error(), "exceeds") {
		t.Fatalf("got %v, want a corrupt error about the size cap", err)
	}
}

// TestDecodeForgedContentSize checks that a frame header claiming a huge
// content size does not make the decoder allocate it.
func TestDecodeForgedContentSize(t *testing.T) {
	frame := []byte{0x28, 0xb5, 0x2f, 0xfd, // zstd magic
		0xc0,                                           // 8-byte content size, windowed
		0x00,                                           // window 1 KiB
		0x00, 0x00, 0x00, 0x3f, 0x00, 0x00, 0x00, 0x00, // content size 1 GiB - 16 MiB
		0x03, 0x00, 0x00, // last raw block of 0 bytes
	}
	data := append([]byte(Magic), frame...)
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	_, err := DecodeManifest(data)
	runtime.ReadMemStats(&after)
	if !errors.Is(err, ErrCorrupt) {
		t.Fatalf("got %v, want ErrCorrupt", err)
	}
	if n := after.TotalAlloc - before.TotalAlloc; n > 64<<20 {
		t.Fatalf("decoding a forged 20-byte frame allocated %d bytes", n)
	}
}

func TestPartialName(t *testing.T) {
	for _, tc := range []struct {
		n        int
		locality string
		want     string
	}{
		{0, "region=us-east1", "BACKUP_PART_0_region_us-east1"},
		{3, "region=eu,zone=eu-west1-b", "BACKUP_PART_3_region_eu_zone_eu-west1-b"},
		{1, "", "BACKUP_PART_1_default"},
		{2, "a/../b", "BACKUP_PART_2_a____b"},
		{4, strings.Repeat("x", 200), "BACKUP_PART_4_" + strings.Repeat("x", 96)},
	} {
		if got := PartialName(tc.n, tc.locality); got != tc.want {
			t.Errorf("PartialName(%d, %q) = %q, want %q", tc.n, tc.locality, got, tc.want)
		}
	}
}

func TestWriteReadPartial(t *testing.T) {
	ctx := context.Background()
	s := storagefake.New()
	p := &manifestpb.BackupPartialManifest{
		BackupId: "b1",
		Locality: "region=us-east1",
		Files:    sampleManifest().Files,
	}
	if err := WritePartial(ctx, s, testDir, 1, p); err != nil {
		t.Fatal(err)
	}
	name := testDir + "/BACKUP_PART_1_region_us-east1"
	if want := []string{name + ChecksumSuffix, name}; !slices.Equal(s.Commits(), want) {
		t.Fatalf("commit order %q, want %q", s.Commits(), want)
	}
	got, err := ReadPartial(ctx, s, testDir, 1, "region=us-east1", "b1")
	if err != nil {
		t.Fatal(err)
	}
	if !proto.Equal(got, p) {
		t.Fatalf("read back %v, want %v", got, p)
	}
	// Rewriting (a retry) replaces it.
	p.Files = nil
	if err := WritePartial(ctx, s, testDir, 1, p); err != nil {
		t.Fatalf("rewriting a partial: %v", err)
	}
	if got, err := ReadPartial(ctx, s, testDir, 1, "region=us-east1", ""); err != nil || len(got.Files) != 0 {
		t.Fatalf("after rewrite: %v, %v", got, err)
	}

	if _, err := ReadPartial(ctx, s, testDir, 1, "region=us-east1", "b2"); !errors.Is(err, ErrCorrupt) ||
		!strings.Contains(err.Error(), `belongs to backup "b1", want "b2"`) {
		t.Fatalf("foreign backup id: got %v", err)
	}
	if _, err := ReadPartial(ctx, s, testDir, 1, "region_us-east1", ""); !errors.Is(err, ErrCorrupt) ||
		!strings.Contains(err.Error(), `locality is "region=us-east1"`) {
		t.Fatalf("other locality with the same sanitized name: got %v", err)
	}
	if _, err := ReadPartial(ctx, s, testDir, 2, "region=us-east1", ""); !errors.Is(err, storage.ErrNotFound) {
		t.Fatalf("missing partial: got %v, want ErrNotFound", err)
	}
	d, _ := s.Get(name)
	s.Put(name, append(d, 0))
	if _, err := ReadPartial(ctx, s, testDir, 1, "region=us-east1", ""); !errors.Is(err, ErrCorrupt) ||
		!strings.Contains(err.Error(), name) {
		t.Fatalf("tampered partial: got %v", err)
	}
	if err := WritePartial(ctx, s, testDir, 0, &manifestpb.BackupPartialManifest{Locality: "x"}); !errors.Is(err, storage.ErrInvalidArgument) {
		t.Fatalf("partial without backup id: got %v", err)
	}
}

func TestDescTS(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	var times []time.Time
	for i := 0; i < 500; i++ {
		times = append(times, time.Unix(0, r.Int64N(1<<62)))
	}
	times = append(times, time.Unix(0, 0), time.Unix(0, 1), time.Unix(0, 10), time.Unix(0, 1<<62))
	enc := make([]string, len(times))
	for i, tm := range times {
		enc[i] = DescTS(tm)
		if len(enc[i]) != 19 {
			t.Fatalf("DescTS(%v) = %q, want 19 digits", tm, enc[i])
		}
		back, err := ParseDescTS(enc[i])
		if err != nil || !back.Equal(tm) {
			t.Fatalf("ParseDescTS(DescTS(%v)) = %v, %v", tm, back, err)
		}
	}
	for i := range times {
		for j := range times {
			if times[i].Before(times[j]) != (enc[i] > enc[j]) {
				t.Fatalf("order broken: %v→%s, %v→%s", times[i], enc[i], times[j], enc[j])
			}
		}
	}
	for _, bad := range []string{"", "123", "92233720368547758070", "922337203685477580a", "9999999999999999999"} {
		if _, err := ParseDescTS(bad); !errors.Is(err, storage.ErrInvalidArgument) {
			t.Errorf("ParseDescTS(%q): got %v, want invalid argument", bad, err)
		}
	}
}

func TestCheckpoints(t *testing.T) {
	ctx := context.Background()
	s := storagefake.New()
	if _, ok, err := ReadLatestCheckpoint(ctx, s, testDir); ok || err != nil {
		t.Fatalf("empty: got ok=%v err=%v", ok, err)
	}
	base := time.Date(2026, 11, 24, 0, 47, 26, 0, time.UTC)
	at := func(i int) time.Time { return base.Add(time.Duration(i) * time.Minute) }
	write := func(i int) {
		t.Helper()
		m := sampleManifest()
		m.JobId = int64(100 + i)
		if err := WriteCheckpoint(ctx, s, testDir, m, at(i)); err != nil {
			t.Fatal(err)
		}
		if m.IsCheckpoint {
			t.Fatal("WriteCheckpoint modified its argument")
		}
	}
	latestJob := func() int64 {
		t.Helper()
		m, ok, err := ReadLatestCheckpoint(ctx, s, testDir)
		if err != nil || !ok {
			t.Fatalf("ReadLatestCheckpoint: ok=%v err=%v", ok, err)
		}
		if !m.IsCheckpoint {
			t.Fatal("checkpoint not marked is_checkpoint")
		}
		return m.JobId
	}
	cp := func(i int) string { return testDir + "/" + CheckpointName(at(i)) }

	for i := 0; i < 4; i++ {
		write(i)
	}
	want := []string{cp(3), cp(3) + ChecksumSuffix, cp(2), cp(2) + ChecksumSuffix}
	slices.Sort(want)
	if got := s.Names(); !slices.Equal(got, want) {
		t.Fatalf("after 4 checkpoints the store holds\n%q\nwant\n%q", got, want)
	}
	if j := latestJob(); j != 103 {
		t.Fatalf("latest checkpoint is job %d, want 103", j)
	}

	// A torn newest checkpoint (checksum written, checkpoint not) and a
	// corrupted one are skipped.
	s.Put(cp(5)+ChecksumSuffix, []byte(strings.Repeat("ab", 32)))
	d, _ := s.Get(cp(3))
	s.Put(cp(4), d)
	s.Put(cp(4)+ChecksumSuffix, []byte(strings.Repeat("00", 32)))
	if j := latestJob(); j != 103 {
		t.Fatalf("with torn newer checkpoints, latest is job %d, want 103", j)
	}

	// A store error is not mistaken for a torn checkpoint.
	s.FailRead = func(string) error { return storage.ErrUnavailable }
	if _, _, err := ReadLatestCheckpoint(ctx, s, testDir); !errors.Is(err, storage.ErrUnavailable) {
		t.Fatalf("got %v, want ErrUnavailable", err)
	}
	s.FailRead = nil

	// Writing again prunes the torn ones and the oldest good one.
	write(6)
	want = []string{cp(6), cp(6) + ChecksumSuffix, cp(4), cp(4) + ChecksumSuffix}
	slices.Sort(want)
	if got := s.Names(); !slices.Equal(got, want) {
		t.Fatalf("after pruning the store holds\n%q\nwant\n%q", got, want)
	}
	if j := latestJob(); j != 106 {
		t.Fatalf("latest checkpoint is job %d, want 106", j)
	}

	// A checkpoint written with a clock behind the newest is kept.
	write(1)
	if _, ok := s.Get(cp(1)); !ok {
		t.Fatalf("checkpoint written with a skewed clock was pruned: %q", s.Names())
	}
	if _, ok := s.Get(cp(6)); !ok {
		t.Fatalf("newest checkpoint was pruned: %q", s.Names())
	}
	if n := len(s.Names()); n != 4 {
		t.Fatalf("%d files left, want 2 checkpoints with checksums: %q", n, s.Names())
	}
}

func FuzzDecodeManifest(f *testing.F) {
	good, err := Encode(sampleManifest())
	if err != nil {
		f.Fatal(err)
	}
	f.Add(good)
	f.Add([]byte{})
	f.Add([]byte(Magic))
	f.Add(append([]byte(Magic), 0x28, 0xb5, 0x2f, 0xfd))
	partial, _ := Encode(&manifestpb.BackupPartialManifest{BackupId: "x", Locality: "y"})
	f.Add(partial)
	f.Fuzz(func(t *testing.T, data []byte) {
		m, err := DecodeManifest(data)
		if err != nil {
			if !errors.Is(err, ErrCorrupt) {
				t.Fatalf("error %v does not wrap ErrCorrupt", err)
			}
			return
		}
		if err := Validate(m); err != nil {
			t.Fatalf("decoded manifest fails validation: %v", err)
		}
		// A decoded manifest survives a round trip.
		again, err := Encode(m)
		if err != nil {
			t.Fatal(err)
		}
		m2, err := DecodeManifest(again)
		if err != nil || !proto.Equal(m, m2) {
			t.Fatalf("re-decoding: %v", err)
		}
		_, _ = DecodePartial(data)
	})
}
