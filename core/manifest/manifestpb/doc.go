// Package manifestpb holds the generated protobuf types of cairn's
// on-storage metadata (cairn.manifest.v1). Callers encode and decode them
// through package manifest, which adds framing, compression, checksums and
// validation.
package manifestpb

//go:generate sh -c "cd ../../.. && protoc --go_out=. --go_opt=paths=source_relative core/manifest/manifestpb/manifest.proto"
