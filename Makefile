# wasmtrace: `make demo` builds wasmtrace and profiles a bundled Wasmtime app;
# `make test` runs every test (root needed for the BPF and end-to-end ones).

GO       ?= go
# The BPF object is compiled with exactly this compiler (Debian bookworm's
# clang-19); `make check-generate` proves the committed object matches.
CLANG    ?= clang-19
BIN      := bin/wasmtrace
TARGETS  := v39 v37 v3
TARGETDIR:= testdata/targets/bin
DEMO_PID_FILE := /tmp/wasmtrace-demo.pid
# BPF needs root: use sudo unless already root.
SUDO     := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
FUZZTIME ?= 10s

.PHONY: all build generate check-generate deps-bpf deps-test targets demo test unit e2e fuzz bench clean

all: build

build:
	$(GO) build -o $(BIN) ./cmd/wasmtrace

# Compilers for the BPF C (only needed to change bpf/).
deps-bpf:
	@command -v $(CLANG) >/dev/null && command -v llvm-strip-19 >/dev/null && test -f /usr/include/bpf/bpf_helpers.h || { \
		echo "installing clang-19, llvm-19 and libbpf-dev from Debian"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq clang-19 llvm-19 libbpf-dev >/dev/null; }

# What the tests use besides Go: headless Chromium renders the SVG flame
# graph, Node checks speedscope output against speedscope's own schema,
# setpriv (util-linux) runs wasmtrace unprivileged, and systemd-analyze
# checks the agent's unit (deploy/).
deps-test:
	@missing=""; \
	command -v chromium >/dev/null || missing="$$missing chromium"; \
	command -v node >/dev/null || missing="$$missing nodejs"; \
	command -v npm >/dev/null || missing="$$missing npm"; \
	command -v systemd-analyze >/dev/null || missing="$$missing systemd"; \
	if [ -n "$$missing" ]; then echo "installing$$missing from Debian"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; fi
	@test -d profile/testdata/speedscope/node_modules || npm ci --prefix profile/testdata/speedscope --no-audit --no-fund --silent

generate: deps-bpf
	cd loader && $(GO) generate ./...

# Regenerate and fail if the committed objects differ.
check-generate: generate
	git diff --exit-code -- loader/

# Real Wasmtime embedders (wasmtime-go from the Go module proxy).
targets:
	@for v in $(TARGETS); do testdata/targets/build.sh $$v $(TARGETDIR) stripped || exit 1; done
	@testdata/events/build.sh
	@for v in v39 v37; do testdata/async/build.sh $$v || exit 1; done
	@for v in v39 v37; do testdata/component/build.sh $$v || exit 1; done && testdata/component/wasm.sh
	@for v in v39 v37 v3; do testdata/guest/build.sh $$v || exit 1; done && testdata/guest/fetch.sh
	@testdata/otelcol/build.sh

# Profile the bundled demo app (four scenarios on four threads) for 5 s.
demo: build
	testdata/targets/build.sh v39 $(TARGETDIR)
	@$(TARGETDIR)/target-v39 -scenario all > /dev/null & echo $$! > $(DEMO_PID_FILE); sleep 1
	@echo "+ $(SUDO) $(BIN) -p $$(cat $(DEMO_PID_FILE)) -d 5s"
	@$(SUDO) $(BIN) -p $$(cat $(DEMO_PID_FILE)) -d 5s; status=$$?; kill $$(cat $(DEMO_PID_FILE)); rm -f $(DEMO_PID_FILE); exit $$status

# What wasmtrace costs on this machine, in one run of about 35 minutes (root):
# BPF time per sample, the target's slowdown next to perf record, wasmtrace's
# own CPU, memory and lost samples, time to the first sample, Go benchmarks.
# Prints a table and writes it to bench/results/latest.md.
bench: build
	testdata/targets/build.sh v39 $(TARGETDIR)
	testdata/targets/build.sh v37 $(TARGETDIR)
	testdata/guest/build.sh v39 && testdata/guest/fetch.sh
	testdata/otelcol/build.sh
	$(GO) build -o bin/wtbench ./bench
	$(SUDO) bin/wtbench -wasmtrace $(BIN) -target $(TARGETDIR)/target-v39 -go "$$(command -v $(GO))" -o bench/results/latest.md

# Everything: unit tests, BPF and end-to-end tests on real targets, and a
# short run of every fuzz target.
test: targets deps-test
	$(GO) vet ./...
	$(GO) test -count=1 -timeout 60m ./...
	$(MAKE) fuzz

unit:
	$(GO) test -count=1 -short ./...

fuzz:
	FUZZTIME=$(FUZZTIME) scripts/fuzz.sh

clean:
	rm -rf bin $(TARGETDIR)
