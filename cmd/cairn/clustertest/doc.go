// Package clustertest holds the multi-process tests of `cairn start`,
// `cairn cluster`, `cairn node` and `--host`: they build the cairn binary
// once and run real node processes on 127.0.0.1. It is a package of its
// own so that building the binary does not slow down cmd/cairn's tests.
//
// The kill tests (chaos_test.go, on the harness of chaos_harness_test.go)
// SIGKILL node processes during backups and restart them on their stores:
// the coordinator at distinct phases of a 500 MB backup under a workload,
// a node that only exports, and a pause and resume through different
// nodes. They use the testing-only environment knobs of `cairn start`
// (CAIRN_TESTING_EXPORT_DELAY, CAIRN_TESTING_EXPORT_LOG,
// CAIRN_TESTING_FINISH_DELAY) and read jobs from etcd and checkpoints from
// the destination directory. `make soak` runs the coordinator-kill test
// with more kills (CAIRN_SOAK_KILLS) and data (CAIRN_SOAK_BYTES).
package clustertest
