# announcementd — run `make help` for the targets.
GO        ?= go
BIN       := bin
SHM       ?= /dev/shm/notice_v1
FUZZTIME  ?= 30s
# The build names its VCS revision (--version, status) when it is built in a checkout; GOFLAGS=-buildvcs=false,
# set on some machines, would hide it.
BUILDVCS  ?= auto
export PATH := /usr/local/go/bin:$(PATH)

.PHONY: help build man run test bench lint fuzz storm clean

help: ## list the targets
	@grep -E '^[a-z]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-6s %s\n", $$1, $$2}'

build: ## build bin/announcementd, bin/announcementctl and the C reader (libnotice.so, notice_dump)
	$(GO) build -buildvcs=$(BUILDVCS) -o $(BIN)/ ./cmd/...
	$(MAKE) -s -C clients/c

man: ## write the manual pages bin/man/announcementd.8 and bin/man/announcementctl.1 from docs/man/*.md (go-md2man)
	@mkdir -p $(BIN)/man
	$(GO) tool go-md2man -in docs/man/announcementd.8.md -out $(BIN)/man/announcementd.8
	$(GO) tool go-md2man -in docs/man/announcementctl.1.md -out $(BIN)/man/announcementctl.1

run: build ## start the daemon on embedded defaults (region /dev/shm/notice_v1, state under ./var; no root)
	@mkdir -p var
	@echo "publish:  $(BIN)/announcementctl --runtime-dir var/run publish --id 1 'Hello from announcementd'"
	@echo "watch:    $(BIN)/announcementctl watch --shm $(SHM)"
	$(BIN)/announcementd --shm $(SHM) --state-dir var/state --runtime-dir var/run

test: build ## vet, then every test with the race detector (Go, C, Python, cross-process stress)
	$(GO) vet ./...
	$(GO) test -race -count=1 -timeout 15m ./...

bench: build ## measure the board, the worker's API, the region guard, and reload vs cold restart (runs bin/announcementd); print the tables
	$(GO) run ./bench/boardbench
	$(GO) run ./bench/workerbench
	$(GO) run ./bench/guardbench
	$(GO) run ./bench/reloadbench -daemon $(BIN)/announcementd
	$(GO) run ./bench/healbench -daemon $(BIN)/announcementd

lint: ## gofmt and go vet must be clean
	@test -z "$$(gofmt -l $$(git ls-files '*.go'))" || { gofmt -l $$(git ls-files '*.go'); echo 'gofmt: files above need formatting'; exit 1; }
	$(GO) vet ./...

fuzz: ## fuzz the board reader, the handoff decoder and the API body decoder, FUZZTIME each (default 30s); crashers land in testdata/fuzz
	$(GO) test ./board/reader -run '^$$' -fuzz FuzzReader -fuzztime $(FUZZTIME)
	$(GO) test ./handoff -run '^$$' -fuzz FuzzDecode -fuzztime $(FUZZTIME)
	$(GO) test ./handoff -run '^$$' -fuzz FuzzParseControl -fuzztime $(FUZZTIME)
	$(GO) test ./worker -run '^$$' -fuzz FuzzDecodePut -fuzztime $(FUZZTIME)
	$(GO) test ./worker -run '^$$' -fuzz FuzzDecodeBatch -fuzztime $(FUZZTIME)

storm: build ## the fault storm (root): 1,000 faults on the built daemon under load, in under 10 minutes; prints its figures and seed (STORMFLAGS=-storm.seed=N ...)
	$(GO) test -count=1 -v -timeout 12m -run '^TestStorm$$' ./storm -args -storm.faults=1000 -storm.duration=8m30s $(STORMFLAGS)

clean: ## remove build outputs
	rm -rf $(BIN)
	$(MAKE) -s -C clients/c clean
