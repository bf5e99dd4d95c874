# announcementd — run `make help` for the targets.
GO        ?= go
BIN       := bin
SHM       ?= /dev/shm/notice_v1
FUZZTIME  ?= 30s
# The build names its VCS revision (--version, status) when it is built in a checkout; GOFLAGS=-buildvcs=false,
# set on some machines, would hide it.
BUILDVCS  ?= auto
export PATH := /usr/local/go/bin:$(PATH)

.PHONY: help build man run test test-short bench fanout scale profile lint fuzz storm clean setup check-setup go-check

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-11s %s\n", $$1, $$2}'

build: go-check ## build bin/announcementd, bin/announcementctl and the C reader (libnotice.so, notice_dump)
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

test-short: go-check ## the unit tests with the race detector, in under a minute: the slow ones (the built daemon, readers in three languages, stress, the storm) skip with -short
	$(GO) test -short -race -count=1 -timeout 5m ./...

bench: build ## measure the board, the worker's API, the region guard, damage repair, reload vs cold restart, futex fan-out and the scale report (runs bin/announcementd); print the tables, write docs/BENCHMARKS.md and docs/bench/
	$(GO) run ./bench/boardbench -md docs/BENCHMARKS.md -raw docs/bench/board.txt
	$(GO) run ./bench/workerbench -md docs/BENCHMARKS.md -raw docs/bench/worker.txt
	$(GO) run ./bench/guardbench
	$(GO) run ./bench/reloadbench -daemon $(BIN)/announcementd
	$(GO) run ./bench/healbench -daemon $(BIN)/announcementd -md docs/BENCHMARKS.md -raw docs/bench/heal.txt
	$(MAKE) --no-print-directory fanout
	$(MAKE) --no-print-directory scale

fanout: build ## futex fan-out: 1, 100, 10,000 readers blocked on the board (C pthreads and Go locked threads over processes), and one reader whose CPU has not gone idle, against a bare futex wake in the same run, about 2 min; writes docs/BENCHMARKS.md (fanout) and docs/bench/fanout.txt (FANOUTFLAGS=... adds flags: go run ./bench/fanout -h)
	$(GO) run ./bench/fanout -md docs/BENCHMARKS.md -raw docs/bench/fanout.txt $(FANOUTFLAGS)

profile: build ## CPU profile of the worker under 64 publishing clients, about 1 min: docs/bench/profile/ (cpu.pb.gz, flamegraph.html, top.txt) and docs/BENCHMARKS.md (PROFILEFLAGS=-perf adds perf record -g; go run ./bench/profile -h)
	$(GO) run ./bench/profile -daemon $(BIN)/announcementd -go $(GO) -md docs/BENCHMARKS.md -raw docs/bench/profile.txt $(PROFILEFLAGS)

scale: build ## 250,000 simulated clients polling the board (C, Go, Python readers) vs HTTP polling, about 6 min; writes docs/BENCHMARKS.md and docs/bench/scale.txt (SCALEFLAGS=... adds flags: go run ./bench/scale -h)
	$(GO) run ./bench/scale -daemon $(BIN)/announcementd -md docs/BENCHMARKS.md -raw docs/bench/scale.txt $(SCALEFLAGS)

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

setup: ## install what build and test need on Debian 12 (root; .ci/setup: gcc, python3, systemd, ...; Go from bookworm-backports when there is no go >= 1.21)
	.ci/setup

check-setup: ## prove .ci/setup without Go (root): a private mount namespace, /usr/local/go hidden, empty HOME and Go caches; go build, go vet; prints the times
	.ci/check-setup

# What build (and so run, test) checks first: a go >= 1.21 on PATH, which fetches go.mod's toolchain (GOTOOLCHAIN).
# Without one, .ci/setup installs it as root, or says in one line to run `sudo .ci/setup`.
go-check:
	@GO='$(GO)' .ci/setup --go-check

# Installation: make install copies what make build and make man wrote, under $(DESTDIR)$(PREFIX) only; make deb
# packs the same files, laid out for Debian (packaging/deb/mkdeb). README.md, "Install", has the table.
PREFIX      ?= /usr/local
DESTDIR     ?=
BINDIR      ?= $(PREFIX)/bin
LIBDIR      ?= $(PREFIX)/lib
INCLUDEDIR  ?= $(PREFIX)/include
# systemd reads units in /usr/local/lib/systemd/system and /usr/lib/systemd/system (systemd-analyze unit-paths), and
# systemd-sysusers reads /usr/local/lib/sysusers.d and /usr/lib/sysusers.d: both prefixes work as they are.
UNITDIR     ?= $(PREFIX)/lib/systemd/system
SYSUSERSDIR ?= $(PREFIX)/lib/sysusers.d
MANDIR      ?= $(PREFIX)/share/man
DOCDIR      ?= $(PREFIX)/share/doc/announcementd
# Where Debian's python3 finds a module: /usr/lib/python3/dist-packages for /usr, and for /usr/local (or another
# prefix, which then needs PYTHONPATH) $(PREFIX)/lib/python3.X/dist-packages, X being the installed python3's.
PYTHON3     ?= $(firstword $(wildcard /usr/bin/python3) python3)
PYTHONDIR   ?= $(if $(filter /usr,$(PREFIX)),/usr/lib/python3/dist-packages,$(PREFIX)/lib/python$(shell $(PYTHON3) -c 'import sys; print("%d.%d" % sys.version_info[:2])' 2>/dev/null)/dist-packages)
INSTALL     ?= install
# make deb: the package's version (derived from bin/announcementd --version when empty) and where it goes.
VERSION     ?=
DEBDIR      ?= $(BIN)

INSTALLED = $(BINDIR)/announcementd $(BINDIR)/announcementctl $(LIBDIR)/libnotice.so $(INCLUDEDIR)/notice.h \
	$(PYTHONDIR)/notice.py $(UNITDIR)/announcementd.service $(UNITDIR)/announcementd.socket \
	$(SYSUSERSDIR)/announcementd.conf $(DOCDIR)/notify-reload.conf $(MANDIR)/man8/announcementd.8 \
	$(MANDIR)/man1/announcementctl.1

# ldconfig's cache knows /usr/lib and /usr/local/lib: refreshed by install and uninstall into the live system (no
# DESTDIR) as root; another LIBDIR needs LD_LIBRARY_PATH or a file in /etc/ld.so.conf.d.
define ldconfig
	@if [ -z "$(DESTDIR)" ] && [ "$$(id -u)" = 0 ]; then \
		case "$(LIBDIR)" in /usr/lib|/usr/local/lib) ldconfig ;; \
		*) echo "note: $(LIBDIR) is not in ld.so's path: LD_LIBRARY_PATH=$(LIBDIR), or a file in /etc/ld.so.conf.d" ;; esac; \
	fi
endef

.PHONY: install install-files uninstall deb

install: build man ## install under DESTDIR+PREFIX (default PREFIX=/usr/local): binaries, libnotice.so, notice.h, notice.py, units, sysusers.d, man pages
	@$(MAKE) --no-print-directory install-files
	$(ldconfig)
	@if [ -z "$(DESTDIR)" ]; then \
		case "$(UNITDIR)" in /etc/systemd/system|/usr/local/lib/systemd/system|/usr/lib/systemd/system|/lib/systemd/system) ;; \
		*) echo "note: systemd does not read $(UNITDIR): systemctl link $(UNITDIR)/announcementd.service" ;; esac; \
		case "$(PYTHONDIR)" in /usr/lib/python3/dist-packages|/usr/local/lib/python3.*/dist-packages) ;; \
		*) echo "note: python3 does not look in $(PYTHONDIR): PYTHONPATH=$(PYTHONDIR)" ;; esac; \
		echo "installed; to run it (as root): systemd-sysusers && systemctl daemon-reload && systemctl enable --now announcementd"; \
	fi

# The copies of install, from $(BIN) as it is (packaging/deb/mkdeb runs it with BIN= and Debian's directories).
install-files:
	@case "$(PYTHONDIR)" in */python/dist-packages) echo "python3 not found: set PYTHONDIR=" >&2; exit 1 ;; esac
	$(INSTALL) -d $(DESTDIR)$(BINDIR) $(DESTDIR)$(LIBDIR) $(DESTDIR)$(INCLUDEDIR) $(DESTDIR)$(PYTHONDIR) \
		$(DESTDIR)$(UNITDIR) $(DESTDIR)$(SYSUSERSDIR) $(DESTDIR)$(DOCDIR) $(DESTDIR)$(MANDIR)/man1 $(DESTDIR)$(MANDIR)/man8
	$(INSTALL) -m 0755 $(BIN)/announcementd $(BIN)/announcementctl $(DESTDIR)$(BINDIR)/
	$(INSTALL) -m 0644 clients/c/libnotice.so $(DESTDIR)$(LIBDIR)/
	$(INSTALL) -m 0644 clients/c/notice.h $(DESTDIR)$(INCLUDEDIR)/
	$(INSTALL) -m 0644 clients/python/notice.py $(DESTDIR)$(PYTHONDIR)/
	for u in announcementd.service announcementd.socket; do \
		sed 's|@BINDIR@|$(BINDIR)|g' systemd/units/$$u >$(DESTDIR)$(UNITDIR)/.$$u.tmp && \
		chmod 0644 $(DESTDIR)$(UNITDIR)/.$$u.tmp && mv $(DESTDIR)$(UNITDIR)/.$$u.tmp $(DESTDIR)$(UNITDIR)/$$u || exit 1; \
	done
	$(INSTALL) -m 0644 systemd/units/announcementd.sysusers $(DESTDIR)$(SYSUSERSDIR)/announcementd.conf
	$(INSTALL) -m 0644 systemd/units/notify-reload.conf $(DESTDIR)$(DOCDIR)/
	$(INSTALL) -m 0644 $(BIN)/man/announcementd.8 $(DESTDIR)$(MANDIR)/man8/
	$(INSTALL) -m 0644 $(BIN)/man/announcementctl.1 $(DESTDIR)$(MANDIR)/man1/

uninstall: ## remove what make install installed (same DESTDIR, PREFIX); the state, the board and the user stay
	@if [ -z "$(DESTDIR)" ] && [ -z "$(FORCE)" ] && systemctl --quiet is-active announcementd.service 2>/dev/null && \
		[ "$$(systemctl show -p FragmentPath --value announcementd.service)" = "$(UNITDIR)/announcementd.service" ]; then \
		echo "announcementd.service from $(UNITDIR) runs: systemctl disable --now announcementd.service announcementd.socket first (or FORCE=1)" >&2; \
		exit 1; \
	fi
	rm -f $(addprefix $(DESTDIR),$(INSTALLED)) $(DESTDIR)$(PYTHONDIR)/__pycache__/notice.*.pyc
	-@rmdir $(DESTDIR)$(DOCDIR) 2>/dev/null
	$(ldconfig)

deb: build man ## build bin/announcementd_VERSION_ARCH.deb with dpkg-deb (VERSION= overrides the version derived from the build, DEBDIR= the directory)
	@BIN=$(BIN) OUTDIR=$(DEBDIR) VERSION=$(VERSION) packaging/deb/mkdeb
