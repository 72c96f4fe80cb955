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

.PHONY: all build generate check-generate deps-bpf targets demo test unit e2e fuzz bench clean

all: build

build:
	$(GO) build -o $(BIN) ./cmd/wasmtrace

# Compilers for the BPF C (only needed to change bpf/).
deps-bpf:
	@command -v $(CLANG) >/dev/null && command -v llvm-strip-19 >/dev/null && test -f /usr/include/bpf/bpf_helpers.h || { \
		echo "installing clang-19, llvm-19 and libbpf-dev from Debian"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq clang-19 llvm-19 libbpf-dev >/dev/null; }

generate: deps-bpf
	cd loader && $(GO) generate ./...

# Regenerate and fail if the committed objects differ.
check-generate: generate
	git diff --exit-code -- loader/

# Real Wasmtime embedders (wasmtime-go from the Go module proxy).
targets:
	@for v in $(TARGETS); do testdata/targets/build.sh $$v $(TARGETDIR) stripped || exit 1; done

# Profile the bundled demo app (four scenarios on four threads) for 5 s.
demo: build
	testdata/targets/build.sh v39 $(TARGETDIR)
	@$(TARGETDIR)/target-v39 -scenario all > /dev/null & echo $$! > $(DEMO_PID_FILE); sleep 1
	@echo "+ $(SUDO) $(BIN) -p $$(cat $(DEMO_PID_FILE)) -d 5s"
	@$(SUDO) $(BIN) -p $$(cat $(DEMO_PID_FILE)) -d 5s; status=$$?; kill $$(cat $(DEMO_PID_FILE)); rm -f $(DEMO_PID_FILE); exit $$status

# Everything: unit tests, BPF and end-to-end tests on real targets, and a
# short run of every fuzz target.
test: targets
	$(GO) vet ./...
	$(GO) test -count=1 ./...
	$(MAKE) fuzz

unit:
	$(GO) test -count=1 -short ./...

fuzz:
	@set -e; for pkg in $$($(GO) list ./...); do \
		for f in $$($(GO) test -list '^Fuzz' $$pkg | grep '^Fuzz' || true); do \
			echo "fuzz $$pkg $$f ($(FUZZTIME))"; \
			$(GO) test -run '^$$' -fuzz "^$$f\$$" -fuzztime $(FUZZTIME) -fuzzminimizetime 50x $$pkg >/dev/null || { echo "FAIL: fuzz $$f"; $(GO) test -run '^$$' -fuzz "^$$f\$$" -fuzztime 1x $$pkg; exit 1; }; \
		done; \
	done

clean:
	rm -rf bin $(TARGETDIR)
