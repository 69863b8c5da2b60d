# consentcam: `make demo` to see it work, `make test` to run every test.

GO       ?= go
BIN      ?= bin/consentcam
VERSION  ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
# Debian packages: what building and running need (mosquitto-clients for
# watching the bus), and what the tests add (the broker they run, the browser
# they drive, a Chinese font so that it lays the kiosk out as a tablet does,
# the database the fleet monitor mirrors into).
RUN_PACKAGES  := pkg-config libopencv-dev opencv-data mosquitto-clients
# `make deb` builds the Debian packages with nfpm, and the arm64 one with
# Debian's cross compilers against an arm64 sysroot: bookworm's arm64
# libopencv-dev and libc6-dev unpacked by mmdebstrap (libopencv-dev is not
# Multi-Arch: same, so libopencv-dev:arm64 cannot be installed beside the
# amd64 one the tests build with; the sysroot leaves this machine's packages
# as they are). The package tests (deploy/debtest) add debootstrap for a
# minimal bookworm to install the package in, qemu-user-static to run the
# arm64 binary, lintian, curl (the model script) and systemd-analyze.
DEB_PACKAGES      := gcc-aarch64-linux-gnu g++-aarch64-linux-gnu mmdebstrap
DEB_TEST_PACKAGES := debootstrap qemu-user-static lintian curl systemd
TEST_PACKAGES := $(RUN_PACKAGES) mosquitto chromium fonts-wqy-microhei postgresql $(DEB_PACKAGES) $(DEB_TEST_PACKAGES)
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
# nfpm, which packs the .deb files, at a pinned version from the Go module
# proxy (v2.46 and later need a module the proxy refuses), installed once
# outside the checkout; and the bookworm trees `make deb` and its tests use
# (an arm64 sysroot, a minimal amd64 chroot), made once in the same cache.
NFPM_VERSION := v2.45.0
CACHE_DIR    := $(or $(XDG_CACHE_HOME),$(HOME)/.cache)/consentcam
NFPM_DIR     ?= $(or $(CONSENTCAM_NFPM_DIR),$(CACHE_DIR)/nfpm-$(NFPM_VERSION))
DEB_CACHE    ?= $(or $(CONSENTCAM_DEB_CACHE),$(CACHE_DIR)/deb)
ARM64_SYSROOT = $(DEB_CACHE)/bookworm-arm64-sysroot
# The packages' version: the tag (v1.2.3 -> 1.2.3), else 0~N.gHASH with N
# the number of commits, so that a later build upgrades an earlier one.
DEB_VERSION ?= $(shell v=$$(git describe --tags --match 'v[0-9]*' 2>/dev/null) && echo "$${v\#v}" | tr - + || \
	echo "0~$$(git rev-list --count HEAD 2>/dev/null || echo 0).g$$(git rev-parse --short HEAD 2>/dev/null || echo none)")
DEB_VERSION := $(DEB_VERSION)
DIST ?= bin/deb
SUDO     := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
# How many inputs each fuzz target tries in `make fuzz` (`make test` runs them
# briefly). Counts, not durations: with a duration, go1.26's fuzz coordinator
# can fail a target with "context deadline exceeded" as time runs out
# (golang/go#75804, fixed in go1.27).
FUZZTIME ?= 1000000x
TEST_FUZZTIME ?= 100000x

.PHONY: all deps test-deps apt omniwitness axe-core nfpm deb deb-amd64 deb-arm64 deb-pack arm64-sysroot model build demo test lint bench fuzz clean

all: build

## deps: install the Debian packages building and running need (apt-get).
deps:
	@$(MAKE) --no-print-directory apt PACKAGES="$(RUN_PACKAGES)"

## test-deps: the same, and those the tests need (Debian packages, omniwitness, axe-core, nfpm).
test-deps:
	@$(MAKE) --no-print-directory apt PACKAGES="$(TEST_PACKAGES)"
	@$(MAKE) --no-print-directory omniwitness
	@$(MAKE) --no-print-directory axe-core
	@$(MAKE) --no-print-directory nfpm

## nfpm: install the Debian package builder, unless it is there.
nfpm:
	@if [ ! -x "$(NFPM_DIR)/nfpm" ]; then \
		echo "installing nfpm $(NFPM_VERSION) into $(NFPM_DIR)"; \
		mkdir -p "$(NFPM_DIR)" && \
		GOBIN="$(NFPM_DIR)" GOFLAGS= $(GO) install github.com/goreleaser/nfpm/v2/cmd/nfpm@$(NFPM_VERSION); \
	fi

## deb: bin/deb/consentcam_VERSION_amd64.deb and _arm64.deb (installs the cross compilers and nfpm; docs/INSTALL.md).
deb: deps
	@$(MAKE) --no-print-directory apt PACKAGES="$(DEB_PACKAGES)"
	@$(MAKE) --no-print-directory nfpm
	@$(MAKE) --no-print-directory deb-amd64 deb-arm64

# deb-amd64, deb-arm64: one package each (what `make deb` needs installed).
deb-amd64:
	$(GO) build -trimpath -buildmode=pie -ldflags "-s -w -X main.Version=$(DEB_VERSION)" -o $(DIST)/amd64/consentcam ./cmd/consentcam
	@$(MAKE) --no-print-directory deb-pack ARCH=amd64

deb-arm64: arm64-sysroot
	env CGO_ENABLED=1 GOOS=linux GOARCH=arm64 CC=aarch64-linux-gnu-gcc CXX=aarch64-linux-gnu-g++ \
		PKG_CONFIG_SYSROOT_DIR=$(ARM64_SYSROOT) \
		PKG_CONFIG_LIBDIR=$(ARM64_SYSROOT)/usr/lib/aarch64-linux-gnu/pkgconfig:$(ARM64_SYSROOT)/usr/share/pkgconfig \
		CGO_CFLAGS="--sysroot=$(ARM64_SYSROOT)" CGO_CXXFLAGS="--sysroot=$(ARM64_SYSROOT)" CGO_LDFLAGS="--sysroot=$(ARM64_SYSROOT)" \
		$(GO) build -trimpath -buildmode=pie -ldflags "-s -w -X main.Version=$(DEB_VERSION)" -o $(DIST)/arm64/consentcam ./cmd/consentcam
	@$(MAKE) --no-print-directory deb-pack ARCH=arm64

# deb-pack: pack $(DIST)/ARCH/consentcam with nfpm into $(DIST)/consentcam_VERSION_ARCH.deb.
deb-pack:
	@mkdir -p $(DIST)/$(ARCH)/doc
	@printf 'consentcam (%s) unstable; urgency=medium\n\n  * Built from commit %s.\n\n -- consentcam developers <maintainers@consentcam.invalid>  %s\n' \
		"$(DEB_VERSION)" "$$(git rev-parse --short HEAD 2>/dev/null || echo none)" \
		"$$(date -R -u -d @$$(git log -1 --format=%ct 2>/dev/null || echo 0))" | gzip -9n >$(DIST)/$(ARCH)/doc/changelog.gz
	@gzip -9n <deploy/deb/consentcam.1 >$(DIST)/$(ARCH)/doc/consentcam.1.gz
	VERSION=$(DEB_VERSION) ARCH=$(ARCH) BINARY=$(DIST)/$(ARCH)/consentcam DOCDIR=$(DIST)/$(ARCH)/doc \
		$(NFPM_DIR)/nfpm package --packager deb --config deploy/deb/nfpm.yaml --target $(DIST)/consentcam_$(DEB_VERSION)_$(ARCH).deb

# arm64-sysroot: the arm64 libraries and headers to link against, made once (a few minutes, ~1 GB).
arm64-sysroot:
	@$(SUDO) sh deploy/deb/debroot.sh arm64 sysroot $(ARM64_SYSROOT)

## model: download the YuNet face model from its publisher into MODEL_DIR, SHA-256 checked (offline: says what to copy where).
MODEL_DIR ?= /usr/share/consentcam
model:
	@$(SUDO) sh deploy/deb/fetch-model $(MODEL_DIR)

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

## test: gofmt check, go vet, the Debian packages, every test with the race detector, then each fuzz target briefly.
test: test-deps
	@bad=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go')); \
	if [ -n "$$bad" ]; then echo "gofmt needed:"; echo "$$bad"; exit 1; fi
	$(GO) vet ./...
	@# Built before the tests, so that the first compile of both architectures
	@# (minutes) is not inside go test's timeout; deploy/debtest relinks them.
	@$(MAKE) --no-print-directory deb
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
