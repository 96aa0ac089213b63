# cairn — see README.md. Every target installs what it needs.
GO        ?= go
BIN       := bin
CAIRN     := $(BIN)/cairn
PROTOC_GEN_GO      := google.golang.org/protobuf/cmd/protoc-gen-go@v1.36.12
PROTOC_GEN_GO_GRPC := google.golang.org/grpc/cmd/protoc-gen-go-grpc@v1.6.2
DEMO_FLAGS  ?=
BENCH_BYTES ?= 1GB
PLUGIN_BENCH_BYTES ?= 1GiB
CLOUD_BENCH_BYTES ?= 200MB
TEST_TIMEOUT ?= 25m
PROTOS := core/cluster/clusterpb/cluster.proto core/processorpb/processors.proto core/manifest/manifestpb/manifest.proto sdk/internal/pb/storagepb/storage.proto sdk/internal/pb/pluginpb/plugin.proto sdk/internal/pb/localitypb/locality.proto core/server/serverpb/gateway.proto

CACHE     := $(CURDIR)/.cache
# Test servers and code generators are cached outside the clone, so CI's
# fresh clones reuse them between runs.
TOOLS     ?= $(HOME)/.cache/cairn
MINIO_VERSION    := v0.0.0-20260212201848-7aac2a2c5b7c
FAKE_GCS_VERSION := v1.56.1
AZURITE_VERSION  := 3.35.0

CLUSTER_FLAGS ?= --insecure

.PHONY: cluster cluster-down all build demo test test-short soak bench lint proto proto-check protoc-installed clean test-servers

all: build

build:
	$(GO) build ./...
	$(GO) build -o $(CAIRN) ./cmd/cairn
	$(GO) build -o $(BIN)/plugins/ ./plugins/...

## demo: build everything, then back up and restore movr on a 9-node in-process cluster.
demo: build
	./$(CAIRN) demo $(DEMO_FLAGS)

## cluster: build, then start a local 9-node, 3-region cluster of `cairn start` processes (state in cairn-cluster/).
cluster: build
	./$(CAIRN) cluster up $(CLUSTER_FLAGS)

## cluster-down: stop the processes of `make cluster`.
cluster-down:
	./$(CAIRN) cluster down

## test-servers: install MinIO, Azurite and fake-gcs-server into .cache (kept between runs).
test-servers: $(TOOLS)/bin/minio-$(MINIO_VERSION) $(TOOLS)/bin/fake-gcs-server-$(FAKE_GCS_VERSION) $(TOOLS)/npm-$(AZURITE_VERSION)/node_modules/.bin/azurite-blob

$(TOOLS)/bin/minio-$(MINIO_VERSION):
	GOBIN=$(TOOLS)/bin $(GO) install github.com/minio/minio@$(MINIO_VERSION)
	cp $(TOOLS)/bin/minio $@

$(TOOLS)/bin/fake-gcs-server-$(FAKE_GCS_VERSION):
	GOBIN=$(TOOLS)/bin $(GO) install github.com/fsouza/fake-gcs-server@$(FAKE_GCS_VERSION)
	cp $(TOOLS)/bin/fake-gcs-server $@

$(TOOLS)/npm-$(AZURITE_VERSION)/node_modules/.bin/azurite-blob:
	mkdir -p $(TOOLS)/npm-$(AZURITE_VERSION)
	cd $(TOOLS)/npm-$(AZURITE_VERSION) && npm install --no-audit --no-fund --loglevel=error azurite@$(AZURITE_VERSION)
	mkdir -p $(TOOLS)/bin
	ln -sf $(TOOLS)/npm-$(AZURITE_VERSION)/node_modules/.bin/azurite-blob $(TOOLS)/bin/azurite-blob

## test: every test, real servers included.
test: build test-servers proto-check
	$(GO) vet ./...
	CAIRN_TEST_BIN=$(TOOLS)/bin $(GO) test -count=1 -timeout $(TEST_TIMEOUT) ./...

## test-short: the tests that need no external server, in -short mode.
test-short:
	$(GO) test -short -count=1 -timeout $(TEST_TIMEOUT) ./...

## soak: the multi-process kill tests, harder: SOAK_KILLS coordinator SIGKILLs (at most ~25) during a
## backup of SOAK_BYTES under a workload, SOAK_ROUNDS times over.
SOAK_KILLS  ?= 15
SOAK_BYTES  ?= 1GB
SOAK_ROUNDS ?= 3
soak:
	CAIRN_SOAK_KILLS=$(SOAK_KILLS) CAIRN_SOAK_BYTES=$(SOAK_BYTES) \
		$(GO) test -run Soak -count=$(SOAK_ROUNDS) -timeout 60m -v ./cmd/cairn/clustertest

## bench: throughput of backup and restore against a plain copy of the stores, plus micro-benchmarks.
bench: build test-servers
	./$(CAIRN) bench --bytes $(BENCH_BYTES) --bench-plugins $(BIN)/plugins
	CAIRN_BENCH_BYTES=$(PLUGIN_BENCH_BYTES) $(GO) test -run '^$$' -bench Throughput -benchtime 2x ./plugins/storage-local/
	$(GO) test -run '^$$' -bench Stat ./plugins/storage-local/
	CAIRN_TEST_BIN=$(TOOLS)/bin CAIRN_BENCH_BYTES=$(CLOUD_BENCH_BYTES) $(GO) test -run '^$$' -bench BackupTo -benchtime 2x ./cmd/cairn/
	$(GO) test -run '^$$' -bench . -benchtime 3x ./core/mvcc/ ./core/workload/movr/

lint:
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...
	@if command -v staticcheck >/dev/null; then staticcheck ./...; else echo "staticcheck not installed; skipped"; fi

## proto: regenerate the committed protobuf code.
PROTO_BIN   := $(TOOLS)/protoc-gen
PROTO_TOOLS := $(PROTO_BIN)/protoc-gen-go $(PROTO_BIN)/protoc-gen-go-grpc

$(PROTO_BIN)/protoc-gen-go:
	GOBIN=$(PROTO_BIN) $(GO) install $(PROTOC_GEN_GO)

$(PROTO_BIN)/protoc-gen-go-grpc:
	GOBIN=$(PROTO_BIN) $(GO) install $(PROTOC_GEN_GO_GRPC)

protoc-installed:
	@command -v protoc >/dev/null || (apt-get update -qq && apt-get install -y -qq protobuf-compiler)

proto: protoc-installed $(PROTO_TOOLS)
	PATH="$(PROTO_BIN):$$PATH" protoc -I . --go_out=. --go_opt=paths=source_relative \
		--go-grpc_out=. --go-grpc_opt=paths=source_relative $(PROTOS)

## proto-check: fail when the committed generated code is not what the .proto files give.
proto-check: protoc-installed $(PROTO_TOOLS)
	rm -rf $(CACHE)/proto-check && mkdir -p $(CACHE)/proto-check
	PATH="$(PROTO_BIN):$$PATH" protoc -I . --go_out=$(CACHE)/proto-check --go_opt=paths=source_relative \
		--go-grpc_out=$(CACHE)/proto-check --go-grpc_opt=paths=source_relative $(PROTOS)
	@cd $(CACHE)/proto-check && for f in $$(find . -name '*.go'); do \
		cmp -s "$$f" "$(CURDIR)/$$f" || { echo "generated code is stale: $$f (run make proto)"; exit 1; }; done
	@echo "generated protobuf code is current"

clean:
	rm -rf $(BIN)
