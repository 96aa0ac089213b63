// Package mvcc is the MVCC storage engine of the reference cluster: one
// Pebble DB per node holding versioned keys, reads at a timestamp, and the
// time-bounded export of spans to sstables that backups are made of, plus
// the sstable helpers restore needs (read a backup file, write a rewritten
// one, ingest it).
//
// Keys are encoded by EncodeKey (see key.go for the layout) and ordered by
// Comparer: by user key, then newest version first. Values are tagged by
// EncodeValue; a tombstone is the empty stored value. Every sstable, in a
// store or written by Export and SSTWriter, carries a block property with
// the wall-time interval of its versions, which lets Export skip blocks and
// files outside its time range.
package mvcc
