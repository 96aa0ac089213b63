package manifest

import (
	"bytes"
	"fmt"
	"path"
	"strings"

	"github.com/cairnbackup/cairn/core/manifest/manifestpb"
)

// Validate checks the fields of a manifest (final or checkpoint) that
// restore relies on: a known format version, an id, an end time after the
// start time, a known MVCC filter, well-formed spans, descriptors with ids
// and names, and files with clean relative paths, well-formed spans,
// non-negative counts and 32-byte checksums. The error names the first
// field that is wrong.
func Validate(m *manifestpb.BackupManifest) error {
	if m == nil {
		return fmt.Errorf("manifest is nil")
	}
	if m.FormatVersion == 0 || m.FormatVersion > FormatVersion {
		return fmt.Errorf("format_version %d is unknown (this build reads 1 to %d)", m.FormatVersion, FormatVersion)
	}
	if m.BackupId == "" {
		return fmt.Errorf("backup_id is empty")
	}
	end := m.GetEndTime()
	if end.GetWallTime() <= 0 {
		return fmt.Errorf("end_time is not set")
	}
	if start := m.GetStartTime(); start != nil {
		if start.WallTime < 0 || start.Logical < 0 {
			return fmt.Errorf("start_time %d.%d is negative", start.WallTime, start.Logical)
		}
		if !tsLess(start, end) {
			return fmt.Errorf("start_time %d.%d is not before end_time %d.%d",
				start.WallTime, start.Logical, end.WallTime, end.Logical)
		}
	}
	if end.Logical < 0 {
		return fmt.Errorf("end_time logical %d is negative", end.Logical)
	}
	if _, ok := manifestpb.MVCCFilter_name[int32(m.MvccFilter)]; !ok {
		return fmt.Errorf("mvcc_filter %d is unknown", m.MvccFilter)
	}
	if err := validateSpans("spans", m.Spans); err != nil {
		return err
	}
	if err := validateSpans("introduced_spans", m.IntroducedSpans); err != nil {
		return err
	}
	if err := validateSpans("completed_spans", m.CompletedSpans); err != nil {
		return err
	}
	dbs := make(map[uint32]bool, len(m.Databases))
	for i, d := range m.Databases {
		switch {
		case d.GetId() == 0:
			return fmt.Errorf("databases[%d]: id is zero", i)
		case d.GetName() == "":
			return fmt.Errorf("databases[%d] (id %d): name is empty", i, d.GetId())
		case dbs[d.GetId()]:
			return fmt.Errorf("databases[%d]: id %d appears twice", i, d.GetId())
		}
		dbs[d.GetId()] = true
	}
	tables := make(map[uint32]bool, len(m.Tables))
	for i, t := range m.Tables {
		switch {
		case t.GetId() == 0:
			return fmt.Errorf("tables[%d]: id is zero", i)
		case t.GetName() == "":
			return fmt.Errorf("tables[%d] (id %d): name is empty", i, t.GetId())
		case tables[t.GetId()] || dbs[t.GetId()]:
			return fmt.Errorf("tables[%d]: id %d appears twice", i, t.GetId())
		case t.GetParentId() == 0:
			return fmt.Errorf("tables[%d] (%s): parent_id is zero", i, t.GetName())
		}
		tables[t.GetId()] = true
		for j, c := range t.GetColumns() {
			if c.GetName() == "" {
				return fmt.Errorf("tables[%d] (%s): columns[%d]: name is empty", i, t.GetName(), j)
			}
		}
	}
	if err := validateFiles(m.Files); err != nil {
		return err
	}
	for i, l := range m.Localities {
		if l == "" {
			return fmt.Errorf("localities[%d] is empty", i)
		}
	}
	if m.Dir != "" && !CleanRelative(m.Dir) {
		return fmt.Errorf("dir %q is not a clean relative path", m.Dir)
	}
	if c := m.GetEntryCounts(); c.GetEntries() < 0 || c.GetLogicalBytes() < 0 {
		return fmt.Errorf("entry_counts {%d entries, %d bytes} is negative", c.GetEntries(), c.GetLogicalBytes())
	}
	if r := m.GetRevisionStartTime(); r != nil && (r.WallTime < 0 || r.Logical < 0) {
		return fmt.Errorf("revision_start_time %d.%d is negative", r.WallTime, r.Logical)
	}
	return nil
}

// ValidatePartial checks a partial manifest: a backup id, a locality, and
// files as Validate checks them.
func ValidatePartial(p *manifestpb.BackupPartialManifest) error {
	if p == nil {
		return fmt.Errorf("partial manifest is nil")
	}
	if p.BackupId == "" {
		return fmt.Errorf("backup_id is empty")
	}
	if p.Locality == "" {
		return fmt.Errorf("locality is empty")
	}
	return validateFiles(p.Files)
}

func validateFiles(files []*manifestpb.File) error {
	for i, f := range files {
		if f == nil {
			return fmt.Errorf("files[%d] is null", i)
		}
		if !CleanRelative(f.Path) {
			return fmt.Errorf("files[%d]: path %q is not a clean relative path", i, f.Path)
		}
		if f.Span == nil {
			return fmt.Errorf("files[%d] (%s): span is not set", i, f.Path)
		}
		if err := validateSpan(f.Span); err != nil {
			return fmt.Errorf("files[%d] (%s): span %w", i, f.Path, err)
		}
		if f.Entries < 0 || f.LogicalBytes < 0 || f.Size < 0 {
			return fmt.Errorf("files[%d] (%s): negative count (entries %d, logical_bytes %d, size %d)",
				i, f.Path, f.Entries, f.LogicalBytes, f.Size)
		}
		if len(f.Sha256) != 32 {
			return fmt.Errorf("files[%d] (%s): sha256 has %d bytes, want 32", i, f.Path, len(f.Sha256))
		}
	}
	return nil
}

func validateSpans(field string, ss []*manifestpb.Span) error {
	for i, s := range ss {
		if err := validateSpan(s); err != nil {
			return fmt.Errorf("%s[%d] %w", field, i, err)
		}
	}
	return nil
}

// validateSpan requires a non-empty [key, end_key): backups cover key
// ranges, never single keys.
func validateSpan(s *manifestpb.Span) error {
	if s == nil {
		return fmt.Errorf("is null")
	}
	if len(s.EndKey) == 0 {
		return fmt.Errorf("[%q, %q) has no end_key", s.Key, s.EndKey)
	}
	if bytes.Compare(s.Key, s.EndKey) >= 0 {
		return fmt.Errorf("[%q, %q) is empty or inverted", s.Key, s.EndKey)
	}
	return nil
}

// CleanRelative reports whether p is a slash-separated relative path in
// canonical form: not empty, no leading "/", no "." or ".." elements, no
// empty elements, no backslashes or NUL bytes.
func CleanRelative(p string) bool {
	if p == "" || strings.HasPrefix(p, "/") || strings.ContainsAny(p, "\\\x00") {
		return false
	}
	if path.Clean(p) != p {
		return false
	}
	for _, el := range strings.Split(p, "/") {
		if el == "." || el == ".." {
			return false
		}
	}
	return true
}

func tsLess(a, b *manifestpb.Timestamp) bool {
	return a.GetWallTime() < b.GetWallTime() ||
		(a.GetWallTime() == b.GetWallTime() && a.GetLogical() < b.GetLogical())
}
