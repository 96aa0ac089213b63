package sql

import (
	"strconv"
	"strings"

	"github.com/cairnbackup/cairn/core/redact"
)

// Format renders s as canonical SQL: upper-case keywords, single spaces,
// options in a fixed order (false booleans omitted), string literals
// single-quoted, identifiers double-quoted only when they must be. Secrets
// are redacted: passphrases print as 'redacted' and every URI goes through
// redact.URI. Format is safe to log and to store in a job description.
func Format(s Statement) string {
	var b strings.Builder
	switch s := s.(type) {
	case *Backup:
		b.WriteString("BACKUP")
		writeTargets(&b, s.Targets)
		b.WriteString(" INTO ")
		switch {
		case s.Latest:
			b.WriteString("LATEST IN ")
		case s.Subdir != "":
			b.WriteString(quoteString(s.Subdir) + " IN ")
		}
		writeURIs(&b, s.URIs)
		writeAsOf(&b, s.AsOf)
		o := s.Options
		var w optWriter
		w.flag("revision_history", o.RevisionHistory)
		w.flag("detached", o.Detached)
		w.secret("encryption_passphrase", o.EncryptionPassphrase)
		w.uris("kms", o.KMS)
		w.str("EXECUTION LOCALITY", o.ExecutionLocality)
		w.uris("incremental_location", o.IncrementalLocation)
		w.writeTo(&b)
	case *Restore:
		b.WriteString("RESTORE")
		writeTargets(&b, s.Targets)
		b.WriteString(" FROM ")
		writeLatestOrSubdir(&b, s.Latest, s.Subdir)
		writeURIs(&b, s.URIs)
		writeAsOf(&b, s.AsOf)
		o := s.Options
		var w optWriter
		w.str("new_db_name", o.NewDBName)
		w.str("into_db", o.IntoDB)
		w.flag("detached", o.Detached)
		w.secret("encryption_passphrase", o.EncryptionPassphrase)
		w.uris("kms", o.KMS)
		w.str("EXECUTION LOCALITY", o.ExecutionLocality)
		w.flag("schema_only", o.SchemaOnly)
		w.flag("verify_backup_table_data", o.VerifyBackupTableData)
		w.uris("incremental_location", o.IncrementalLocation)
		w.writeTo(&b)
	case *ShowBackups:
		b.WriteString("SHOW BACKUPS IN ")
		writeURIs(&b, s.URIs)
	case *ShowBackup:
		b.WriteString("SHOW BACKUP FROM ")
		writeLatestOrSubdir(&b, s.Latest, s.Subdir)
		writeURIs(&b, s.URIs)
		var w optWriter
		w.flag("check_files", s.CheckFiles)
		w.writeTo(&b)
	case *ShowJobs:
		b.WriteString("SHOW JOBS")
	case *ShowJob:
		b.WriteString("SHOW JOB " + strconv.FormatInt(s.ID, 10))
		if s.WhenComplete {
			b.WriteString(" WHEN COMPLETE")
		}
	case *ControlJob:
		b.WriteString(s.Op.String() + " JOB " + strconv.FormatInt(s.ID, 10))
	}
	return b.String()
}

func writeTargets(b *strings.Builder, t Targets) {
	switch {
	case len(t.Databases) > 0:
		b.WriteString(" DATABASE ")
		for i, d := range t.Databases {
			if i > 0 {
				b.WriteString(", ")
			}
			b.WriteString(quoteIdent(d))
		}
	case len(t.Tables) > 0:
		b.WriteString(" TABLE ")
		for i, tn := range t.Tables {
			if i > 0 {
				b.WriteString(", ")
			}
			b.WriteString(formatTableName(tn))
		}
	}
}

func formatTableName(tn TableName) string {
	table := "*"
	if tn.Table != "*" {
		table = quoteIdent(tn.Table)
	}
	return quoteIdent(tn.Database) + "." + table
}

func writeLatestOrSubdir(b *strings.Builder, latest bool, subdir string) {
	if latest {
		b.WriteString("LATEST IN ")
	} else {
		b.WriteString(quoteString(subdir) + " IN ")
	}
}

func writeURIs(b *strings.Builder, uris []string) {
	b.WriteString(formatURIs(uris))
}

func formatURIs(uris []string) string {
	if len(uris) == 1 {
		return quoteString(redact.URI(uris[0]))
	}
	q := make([]string, len(uris))
	for i, u := range uris {
		q[i] = quoteString(redact.URI(u))
	}
	return "(" + strings.Join(q, ", ") + ")"
}

func writeAsOf(b *strings.Builder, a *AsOf) {
	if a == nil {
		return
	}
	b.WriteString(" AS OF SYSTEM TIME ")
	if a.Relative {
		b.WriteString(quoteString(a.Offset.String()))
	} else {
		b.WriteString(quoteString(a.Timestamp.String()))
	}
}

// optWriter collects the options of a WITH clause in the order written.
type optWriter struct{ opts []string }

func (w *optWriter) flag(name string, v bool) {
	if v {
		w.opts = append(w.opts, name)
	}
}

func (w *optWriter) str(name, v string) {
	if v != "" {
		w.opts = append(w.opts, name+" = "+quoteString(v))
	}
}

func (w *optWriter) secret(name, v string) {
	if v != "" {
		w.opts = append(w.opts, name+" = "+quoteString(redact.Redacted))
	}
}

func (w *optWriter) uris(name string, v []string) {
	if len(v) > 0 {
		w.opts = append(w.opts, name+" = "+formatURIs(v))
	}
}

func (w *optWriter) writeTo(b *strings.Builder) {
	if len(w.opts) > 0 {
		b.WriteString(" WITH ")
		b.WriteString(strings.Join(w.opts, ", "))
	}
}

// quoteString quotes s as a SQL string literal.
func quoteString(s string) string {
	return "'" + strings.ReplaceAll(s, "'", "''") + "'"
}

// quoteIdent returns s bare when it lexes back to itself as a plain
// identifier and is not reserved, else double-quoted.
func quoteIdent(s string) string {
	plain := s != "" && !reserved[s]
	for i := 0; plain && i < len(s); i++ {
		c := s[i]
		switch {
		case c == '_' || (c >= 'a' && c <= 'z'):
		case i > 0 && (c == '$' || (c >= '0' && c <= '9')):
		default:
			plain = false
		}
	}
	if plain {
		return s
	}
	return `"` + strings.ReplaceAll(s, `"`, `""`) + `"`
}
