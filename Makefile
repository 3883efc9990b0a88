# The two commands a newcomer needs: `make run` and `make test`.
GO       ?= go
BUILD    := build
DATA     ?= .erg-data
KEYS     ?= .erg-keys
LISTEN   ?= 127.0.0.1:6080
# make run keeps libp2p on loopback too; a plain `erg run` listens on every
# interface, as a node at home must.
P2P_LISTEN ?= --p2p-listen /ip4/127.0.0.1/tcp/0 --p2p-listen /ip4/127.0.0.1/udp/0/quic-v1
APPS     := notes todo filedrop
VERSION  := $(shell git describe --always --dirty 2>/dev/null || echo dev)
export CGO_ENABLED := 0

.PHONY: all build erg apps packages apps-real test-apps-real bench-apps-real run test unit short bench bench-proxy bench-tools lint clean test-internet bench-internet test-cgroup2

all: build

build: erg apps

erg:
	$(GO) build -ldflags "-X main.version=$(VERSION)" -o $(BUILD)/erg ./cmd/erg

# Each sample app becomes a directory tree with its manifest, its binary in
# bin/ and the empty mount points the sandbox needs.
apps:
	@for app in $(APPS); do \
		rm -rf $(BUILD)/apps/$$app && \
		mkdir -p $(BUILD)/apps/$$app/bin $(BUILD)/apps/$$app/dev $(BUILD)/apps/$$app/proc \
			$(BUILD)/apps/$$app/tmp $(BUILD)/apps/$$app/var && \
		$(GO) build -trimpath -ldflags "-s -w" -o $(BUILD)/apps/$$app/bin/$$app ./apps/$$app && \
		cp apps/$$app/erg.json $(BUILD)/apps/$$app/erg.json || exit 1; \
	done

# Each sample app tree is signed into a package in $(BUILD)/packages, with a
# key made once per app in $(KEYS) (kept across `make clean`, so the apps
# keep their ids and a node upgrades them when their version grows).
packages: erg apps
	@mkdir -p $(BUILD)/packages $(KEYS)
	@for app in $(APPS); do \
		key=$(KEYS)/$$app.key; \
		test -f $$key || $(BUILD)/erg app keygen --out $$key >/dev/null || exit 1; \
		id=$$($(BUILD)/erg app id $$key) || exit 1; \
		sed -i "s/\"id\": *\"[^\"]*\"/\"id\": \"$$id\"/" $(BUILD)/apps/$$app/erg.json && \
		$(BUILD)/erg app pack $(BUILD)/apps/$$app --key $$key -o $(BUILD)/packages/$$app.erg >/dev/null || exit 1; \
	done
	@echo "signed packages: $$(ls $(BUILD)/packages | tr '\n' ' ')"

# Open-source apps ported to erg (apps/<name>/build.sh fetches each one's
# pinned upstream release from npm or Debian), signed like the sample apps
# into $(BUILD)/packages, where `make run` installs them from. Too big for
# `make run` to build every time; build them once with this target.
REAL_APPS ?= tiddlywiki radicale mediawiki etherpad
apps-real: erg
	@mkdir -p $(BUILD)/packages $(KEYS)
	@for app in $(REAL_APPS); do \
		echo "building $$app"; \
		./apps/$$app/build.sh $(BUILD)/apps-real/$$app >/dev/null || exit 1; \
		key=$(KEYS)/$$app.key; \
		test -f $$key || $(BUILD)/erg app keygen --out $$key >/dev/null || exit 1; \
		id=$$($(BUILD)/erg app id $$key) || exit 1; \
		sed -i "s/\"id\": *\"[^\"]*\"/\"id\": \"$$id\"/" $(BUILD)/apps-real/$$app/erg.json && \
		$(BUILD)/erg app pack $(BUILD)/apps-real/$$app --key $$key -o $(BUILD)/packages/$$app.erg 2>/dev/null || exit 1; \
		ls -l $(BUILD)/packages/$$app.erg; \
	done

# The real apps' tests: grains on real nodes, driven in headless Chromium
# (one at a time), with the packages apps-real built.
test-apps-real: apps-real
	ERG_REAL_APPS=$(CURDIR)/$(BUILD)/packages ERG_REAL_KEYS=$(CURDIR)/$(KEYS) \
		$(GO) test -count=1 -timeout 15m -v ./apps/realapps/

# The real apps' figures (cold start, memory, size, install time), each
# beside its baseline from the same run; see BENCHMARKS.md.
bench-apps-real: apps-real
	ERG_REAL_APPS=$(CURDIR)/$(BUILD)/packages ERG_REAL_FIGURES=1 \
		$(GO) test -count=1 -timeout 15m -v -run Figures ./apps/realapps/ | grep -E 'FIGURES|^(ok|FAIL|---)'

run: build packages
	$(BUILD)/erg run --data $(DATA) --listen $(LISTEN) --apps $(BUILD)/packages $(P2P_LISTEN)

STATICCHECK := honnef.co/go/tools/cmd/staticcheck@v0.8.2

# Lint and the tests run side by side: the tests spend much of their time
# waiting on real nodes, sandboxes and browsers, so the two overlap well.
test:
	@$(MAKE) --no-print-directory -j2 lint unit

# -parallel 4 and -p 4: the tests mostly wait (on sandboxes starting,
# nodes dialling, pages loading), so more tests and more packages than
# cores overlap well; with -p 2 the other packages, one after another,
# took as long as node beside them. The longest packages are named first
# so that go test starts them first and the short ones run beside them.
unit:
	$(GO) test -count=1 -p 4 -parallel 4 -timeout 20m ./node/ ./nodetest/ ./tlsnode/ ./...

# The internet lab: homes behind NAT routers, built from network namespaces
# that link only to each other, with real erg nodes in them (see
# internal/lab). It needs root; elsewhere its tests skip and say why.
test-internet:
	ERG_LAB=1 $(GO) test -count=1 -v -timeout 15m ./internal/lab/

# Figures from the lab (BENCHMARKS.md, "Friends across NATs" and "HTTPS"), each
# beside its baseline from the same run; not part of test-internet.
bench-internet:
	@ERG_LAB_BENCH=1 $(GO) test -count=1 -v -timeout 15m -run 'TestBenchGrainPaths|TestBenchHTTPSThroughAFriend' ./internal/lab/ > $${TMPDIR:-/tmp}/erg-bench-internet.log 2>&1; st=$$?; \
	grep -E '_test.go|^(--- |ok|FAIL)' $${TMPDIR:-/tmp}/erg-bench-internet.log; echo "(the whole run: $${TMPDIR:-/tmp}/erg-bench-internet.log)"; exit $$st

# The quick loop: no erg processes, no browsers.
short:
	$(GO) test -count=1 -short ./...

lint:
	@test -z "$$(gofmt -l .)" || { echo "gofmt would change:"; gofmt -l .; exit 1; }
	$(GO) vet ./...
	$(GO) run $(STATICCHECK) ./...

# The sandbox tests, and a few grains and node tests, on a cgroup-v2-only
# kernel (the setup of most systemd distributions), in a qemu VM over this
# machine's / (see .ci/cgroup2-vm and .ci/cgroup2-tests): as root, and as
# an unprivileged user in a delegated v2 subtree. Needs root; the binaries are built here, as the VM emulates
# the CPU and is slow. Exit status 3 from the VM means it cannot run here.
CGROUP2_BIN := $(BUILD)/cgroup2
test-cgroup2:
	@mkdir -p $(CGROUP2_BIN)
	$(GO) test -c -o $(CGROUP2_BIN)/sandbox.test ./sandbox/
	$(GO) test -c -o $(CGROUP2_BIN)/grains.test ./grains/
	$(GO) test -c -o $(CGROUP2_BIN)/node.test ./node/
	CGO_ENABLED=0 $(GO) build -o $(CGROUP2_BIN)/probe ./sandbox/sandboxtest/probe
	@rm -rf $(CGROUP2_BIN)/apps; GO=$(GO) .ci/test-apps $(abspath $(CGROUP2_BIN))/apps
	@.ci/cgroup2-vm .ci/cgroup2-tests $(abspath $(CGROUP2_BIN)); st=$$?; \
	if [ $$st = 3 ]; then echo "test-cgroup2: SKIPPED: the cgroup v2 VM cannot run on this machine (see above)"; exit 0; fi; \
	exit $$st

bench: build bench-tools
	$(GO) test -run '^$$' -bench . -benchtime 50x ./sandbox/
	$(GO) test -run '^$$' -bench . -benchtime 3x ./node/ ./apppkg/ ./appstore/ ./p2p/ ./fed/

# The grain proxy beside the app straight and nginx in front of it, all
# driven by wrk (BENCHMARKS.md, "Proxy beside nginx").
bench-proxy: bench-tools
	$(GO) test -run '^$$' -bench ProxyVsNginx -benchtime 3x ./node/

# wrk and nginx for the proxy benchmark, from Debian where we may install
# them; without them it says so and skips.
bench-tools:
	@if ! command -v wrk >/dev/null || ! { command -v nginx >/dev/null || test -x /usr/sbin/nginx; }; then \
		if command -v apt-get >/dev/null && [ "$$(id -u)" = 0 ]; then \
			apt-get install -y -qq wrk nginx-light >/dev/null 2>&1 || \
			{ apt-get update -qq && apt-get install -y -qq wrk nginx-light >/dev/null; } || \
			echo "bench-tools: could not install wrk and nginx-light"; \
		else echo "bench-tools: install wrk and nginx-light (Debian) for the proxy benchmark"; fi; \
	fi

clean:
	rm -rf $(BUILD)
