// Package core is cairn's engine, for embedding. It holds no code itself;
// this comment maps its packages.
//
//	core/server      entry point: an in-process cluster with job registries; Exec runs statements
//	core/sql         statement parser → AST (BACKUP, RESTORE, SHOW ..., job control); no I/O
//	core/jobs        durable jobs in etcd: record, state machine, claim/adopt, progress
//	core/backup      BACKUP: resolution, plan, export processors, checkpoints, manifest
//	core/restore     RESTORE: manifest, new ids, key rewrite, ingest processors
//	core/manifest    on-storage formats: BACKUP_MANIFEST, checkpoints, checksums
//	core/collection  layout of a collection: subdirectories, LATEST, the backup lock
//	core/cloud       URI → storage.Store routing; core/cloud/local is nodelocal:// and file://
//	core/cluster     the reference cluster: nodes, ranges, catalog, closed timestamps, gRPC
//	core/mvcc        the MVCC engine on Pebble: key encoding, export to sstables, ingest
//	core/keys        table key layout and order-preserving tuple encoding
//	core/spans       span algebra; no I/O
//	core/hlc         hybrid logical clock and timestamps
//	core/redact      redacting secrets in URIs
//	core/fingerprint order-independent fingerprints of table data
//	core/workload/movr  the demo dataset and a light workload
//	core/etcdutil    embedded etcd
//
// Glossary: see DESIGN.md (span, range, layer, manifest, checkpoint, ...).
package core
