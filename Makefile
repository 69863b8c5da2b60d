# consentcam: `make demo` to see it work, `make test` to run every test.

GO       ?= go
BIN      ?= bin/consentcam
VERSION  ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
# Debian packages: what building and running need (mosquitto-clients for
# watching the bus), and what the tests add (the broker they run, the browser
# they drive, a Chinese font so that it lays the kiosk out as a tablet does,
# the database the fleet monitor mirrors into).
RUN_PACKAGES  := pkg-config libopencv-dev opencv-data mosquitto-clients
TEST_PACKAGES := $(RUN_PACKAGES) mosquitto chromium fonts-wqy-microhei postgresql
# omniwitness, the C2SP tlog-witness the tests run, from the Go module proxy
# (the repository has no tags: internal/testenv.OmniwitnessVersion names the
# same pseudo-version), installed once outside the checkout, where
# internal/testenv looks for it.
OMNIWITNESS_VERSION := v0.0.0-20260720115447-2e1c6971d19e
OMNIWITNESS_DIR ?= $(or $(CONSENTCAM_OMNIWITNESS_DIR),$(or $(XDG_CACHE_HOME),$(HOME)/.cache)/consentcam/omniwitness-$(OMNIWITNESS_VERSION))
# axe-core, the accessibility engine the browser tests inject into the
# kiosk's pages, from the npm registry (internal/testenv.AxeVersion names the
# same version), installed once outside the checkout. npm comes from Debian
# unless the machine has one (NodeSource's nodejs carries its own).
AXE_VERSION := 4.10.3
AXE_DIR ?= $(or $(CONSENTCAM_AXE_DIR),$(or $(XDG_CACHE_HOME),$(HOME)/.cache)/consentcam/axe-core-$(AXE_VERSION))
SUDO     := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
# How many inputs each fuzz target tries in `make fuzz` (`make test` runs them
# briefly). Counts, not durations: with a duration, go1.26's fuzz coordinator
# can fail a target with "context deadline exceeded" as time runs out
# (golang/go#75804, fixed in go1.27).
FUZZTIME ?= 1000000x
TEST_FUZZTIME ?= 100000x

.PHONY: all deps test-deps apt omniwitness axe-core build demo test lint bench fuzz clean

all: build

## deps: install the Debian packages building and running need (apt-get).
deps:
	@$(MAKE) --no-print-directory apt PACKAGES="$(RUN_PACKAGES)"

## test-deps: the same, and those the tests need (Debian packages, omniwitness, axe-core).
test-deps:
	@$(MAKE) --no-print-directory apt PACKAGES="$(TEST_PACKAGES)"
	@$(MAKE) --no-print-directory omniwitness
	@$(MAKE) --no-print-directory axe-core

## axe-core: install the accessibility engine the browser tests use, unless it is there.
axe-core:
	@if [ ! -f "$(AXE_DIR)/node_modules/axe-core/axe.min.js" ]; then \
		command -v npm >/dev/null || $(MAKE) --no-print-directory apt PACKAGES=npm; \
		echo "installing axe-core $(AXE_VERSION) into $(AXE_DIR)"; \
		mkdir -p "$(AXE_DIR)" && \
		npm install --prefix "$(AXE_DIR)" --no-save --no-package-lock --no-audit --no-fund axe-core@$(AXE_VERSION); \
	fi

## omniwitness: install the witness the tests run, unless it is there.
omniwitness:
	@if [ ! -x "$(OMNIWITNESS_DIR)/omniwitness" ]; then \
		echo "installing omniwitness $(OMNIWITNESS_VERSION) into $(OMNIWITNESS_DIR)"; \
		mkdir -p "$(OMNIWITNESS_DIR)" && \
		GOBIN="$(OMNIWITNESS_DIR)" GOFLAGS= $(GO) install github.com/transparency-dev/witness/cmd/omniwitness@$(OMNIWITNESS_VERSION); \
	fi

# apt: install those of PACKAGES that are missing.
apt:
	@missing=$$(for p in $(PACKAGES); do dpkg-query -W -f='$${Status}\n' $$p 2>/dev/null | grep -q '^install ok installed' || echo $$p; done); \
	if [ -n "$$missing" ]; then \
		echo "installing Debian packages:" $$missing; \
		$(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get update -q && \
		$(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends $$missing; \
	fi

## build: the consentcam binary in bin/.
build: deps
	$(GO) build -ldflags "-X main.Version=$(VERSION)" -o $(BIN) ./cmd/consentcam

## demo: build, then run the whole system on this machine (Ctrl-C stops it).
demo: build
	$(BIN) demo

## test: gofmt check, go vet, every test with the race detector, then each fuzz target briefly.
test: test-deps
	@bad=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go')); \
	if [ -n "$$bad" ]; then echo "gofmt needed:"; echo "$$bad"; exit 1; fi
	$(GO) vet ./...
	$(GO) test -race -timeout 20m ./...
	$(GO) test -tags matprofile -run MatProfile ./capture/opencv
	@$(MAKE) --no-print-directory fuzz FUZZTIME=$(TEST_FUZZTIME)

## lint: gofmt, go vet and staticcheck.
lint: test-deps
	@bad=$$(gofmt -l .); if [ -n "$$bad" ]; then echo "gofmt needed:"; echo "$$bad"; exit 1; fi
	$(GO) vet ./...
	$(GO) run honnef.co/go/tools/cmd/staticcheck@v0.6.1 ./...

## bench: every benchmark, once, with memory figures (see docs/BENCHMARKS.md).
bench: test-deps
	$(GO) test -run '^$$' -bench . -benchmem ./...

## fuzz: each fuzz target for FUZZTIME (seeds live in each package's testdata/fuzz).
fuzz:
	@set -e; for f in $$(grep -l '^func Fuzz' $$(find . -name '*_test.go' -not -path './.git/*')); do \
		dir=$$(dirname $$f); \
		for t in $$(sed -n 's/^func \(Fuzz[A-Za-z0-9_]*\)(.*/\1/p' $$f); do \
			echo "fuzz $$dir $$t ($(FUZZTIME))"; \
			$(GO) test -run '^$$' -fuzz "^$$t$$" -fuzztime $(FUZZTIME) $$dir; \
		done; \
	done

clean:
	rm -rf bin
