// Package sql parses cairn's statements (BACKUP, RESTORE, SHOW BACKUP(S),
// SHOW JOB(S), PAUSE/RESUME/CANCEL JOB) into an AST. It is hand written and
// pure: no I/O, no catalog, no clock.
//
// Parse performs every check that needs only the statement text: option
// spelling, types and combinations, URI syntax and locality tags, AS OF
// SYSTEM TIME values, job ids. Checks that need the world (does the
// database exist, is the option implemented yet, can the URI be reached)
// are the executor's job. Every error is an *Error carrying the position of
// the offending token.
//
// String (or Format) renders a statement back to canonical SQL with its
// secrets redacted; for a statement without secrets, Parse(s.String()) is
// deeply equal to s.
package sql

import (
	"time"

	"github.com/cairnbackup/cairn/core/hlc"
)

// Statement is a parsed statement: one of *Backup, *Restore, *ShowBackups,
// *ShowBackup, *ShowJobs, *ShowJob, *ControlJob.
type Statement interface {
	statement()
	// String returns canonical SQL with secrets redacted (see Format).
	String() string
}

// TableName names a table of a database; Table is "*" for every table of
// Database (db.*).
type TableName struct {
	Database, Table string
}

// Targets is what a BACKUP or RESTORE covers. At most one of the fields is
// non-empty; both empty means the whole cluster.
type Targets struct {
	Databases []string
	Tables    []TableName
}

// IsCluster reports whether t names the whole cluster.
func (t Targets) IsCluster() bool { return len(t.Databases) == 0 && len(t.Tables) == 0 }

// AsOf is an AS OF SYSTEM TIME clause. When Relative, the time is Offset
// (always negative) from the statement's evaluation time and Timestamp is
// zero; otherwise Timestamp is the absolute time (WallTime > 0) and Offset
// is zero.
type AsOf struct {
	Timestamp hlc.Timestamp
	Offset    time.Duration
	Relative  bool
}

// BackupOptions are the WITH options of a BACKUP. KMS and
// IncrementalLocation list URIs in the order written.
type BackupOptions struct {
	RevisionHistory, Detached bool
	EncryptionPassphrase      string
	KMS                       []string
	ExecutionLocality         string
	IncrementalLocation       []string
}

// Backup is BACKUP ... INTO. With Latest, it appends an incremental layer
// to the newest full backup of the collection; with Subdir, to that full
// backup; with neither, it starts a new full backup. URIs is the
// collection: one URI, or several locality-aware ones of which the first
// listed need not be the default.
type Backup struct {
	Targets Targets
	Subdir  string
	Latest  bool
	URIs    []string
	AsOf    *AsOf
	Options BackupOptions
}

// RestoreOptions are the WITH options of a RESTORE.
type RestoreOptions struct {
	NewDBName, IntoDB                 string
	Detached                          bool
	EncryptionPassphrase              string
	KMS                               []string
	ExecutionLocality                 string
	SchemaOnly, VerifyBackupTableData bool
	IncrementalLocation               []string
}

// Restore is RESTORE ... FROM; exactly one of Latest and Subdir is set.
type Restore struct {
	Targets Targets
	Subdir  string
	Latest  bool
	URIs    []string
	AsOf    *AsOf
	Options RestoreOptions
}

// ShowBackups is SHOW BACKUPS IN: list the full backups of a collection.
type ShowBackups struct {
	URIs []string
}

// ShowBackup is SHOW BACKUP FROM: describe one backup of a collection;
// exactly one of Latest and Subdir is set.
type ShowBackup struct {
	Subdir     string
	Latest     bool
	URIs       []string
	CheckFiles bool
}

// ShowJobs is SHOW JOBS.
type ShowJobs struct{}

// ShowJob is SHOW JOB <id> [WHEN COMPLETE]; ID > 0.
type ShowJob struct {
	ID           int64
	WhenComplete bool
}

// JobOp is what a ControlJob asks of a job.
type JobOp int

// The operations of PAUSE JOB, RESUME JOB and CANCEL JOB.
const (
	JobPause JobOp = iota + 1
	JobResume
	JobCancel
)

// String returns the statement keyword: PAUSE, RESUME or CANCEL.
func (o JobOp) String() string {
	switch o {
	case JobPause:
		return "PAUSE"
	case JobResume:
		return "RESUME"
	case JobCancel:
		return "CANCEL"
	}
	return "JobOp(?)"
}

// ControlJob is PAUSE JOB, RESUME JOB or CANCEL JOB; ID > 0.
type ControlJob struct {
	Op JobOp
	ID int64
}

func (*Backup) statement()      {}
func (*Restore) statement()     {}
func (*ShowBackups) statement() {}
func (*ShowBackup) statement()  {}
func (*ShowJobs) statement()    {}
func (*ShowJob) statement()     {}
func (*ControlJob) statement()  {}

func (s *Backup) String() string      { return Format(s) }
func (s *Restore) String() string     { return Format(s) }
func (s *ShowBackups) String() string { return Format(s) }
func (s *ShowBackup) String() string  { return Format(s) }
func (s *ShowJobs) String() string    { return Format(s) }
func (s *ShowJob) String() string     { return Format(s) }
func (s *ControlJob) String() string  { return Format(s) }
