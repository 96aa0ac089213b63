#!/bin/sh
# Regenerates manifest.pb.go. Run from the repository root:
#   sh core/manifest/manifestpb/gen.sh
set -e
protoc --go_out=. --go_opt=paths=source_relative core/manifest/manifestpb/manifest.proto
