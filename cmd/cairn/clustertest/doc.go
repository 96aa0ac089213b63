// Package clustertest holds the multi-process tests of `cairn start`,
// `cairn cluster`, `cairn node` and `--host`: they build the cairn binary
// once and run real node processes on 127.0.0.1. It is a package of its
// own so that building the binary does not slow down cmd/cairn's tests.
package clustertest
