# lotse — build, test, demo and benchmark.
#
# One flag set everywhere: trivy needs GOEXPERIMENT=jsonv2, and any other
# combination recompiles trivy, syft and cosign from scratch (minutes).
export GOEXPERIMENT := jsonv2
export CGO_ENABLED := 0

GO      ?= go
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS := -s -w -X main.version=$(VERSION)
BIN     := $(CURDIR)/bin

.PHONY: all build image test race promql lint demo bench pgo clean tools

all: build

build: $(BIN)/lotse $(BIN)/lotsed

# The binaries are rebuilt when any Go file or go.sum changes.
GOFILES := $(shell find . -name '*.go' -not -path './bin/*' -not -path './.cache/*' 2>/dev/null) go.mod go.sum

# go build applies cmd/lotse/default.pgo (profile-guided optimisation) to
# lotse and everything it links; make pgo writes it.
$(BIN)/lotse: $(GOFILES) $(wildcard cmd/lotse/default.pgo)
	$(GO) build -ldflags '$(LDFLAGS)' -o $@ ./cmd/lotse

$(BIN)/lotsed: $(GOFILES)
	$(GO) build -ldflags '$(LDFLAGS)' -o $@ ./cmd/lotsed

# The images of lotse and lotsed, without a container engine and offline
# (scripts/imagebuild, go-containerregistry): each static binary on an empty
# base with the system's CA bundle, /etc/passwd and /etc/group with the
# non-root user 65532, /tmp (1777) and OCI labels (version, revision,
# source), written as OCI layouts bin/image/lotse and bin/image/lotsed,
# tagged $(VERSION). The lotse image also carries a static busybox under
# /busybox: GitLab's docker executor runs the components' job scripts with
# a shell (Debian: apt-get install busybox-static). Publish them with
# lotse release oci:bin/image/lotse --to REPOSITORY (see .gitlab-ci.yml).
BUSYBOX      ?= $(shell command -v busybox 2>/dev/null)
IMAGE_SOURCE ?= $(or $(CI_PROJECT_URL),https://github.com/lotse/lotse)
REVISION     ?= $(shell git rev-parse HEAD 2>/dev/null)
# The commit time, so that the same commit gives the same image digests.
CREATED      ?= $(shell git log -1 --format=%ct 2>/dev/null || echo 0)

image: $(BIN)/lotse $(BIN)/lotsed
	$(GO) run ./scripts/imagebuild -lotse $(BIN)/lotse -lotsed $(BIN)/lotsed -out $(BIN)/image \
	  -version '$(VERSION)' -revision '$(REVISION)' -source '$(IMAGE_SOURCE)' -created '$(CREATED)' \
	  $(if $(BUSYBOX),-busybox '$(BUSYBOX)')

# The cosign CLI, built from the module cache at the version lotse links:
# the interoperability tests verify with it what lotse signs, and the reverse.
$(BIN)/cosign: go.mod go.sum
	$(GO) build -ldflags '-s -w' -o $@ github.com/sigstore/cosign/v3/cmd/cosign

tools: $(BIN)/cosign

# The tests run a lotse built without PGO, and go test and go vet compile
# without it too: PGO changes speed, not behaviour, and a second compiled
# copy of trivy, syft and cosign would cost a cold make test 8 more minutes.
TESTBIN := $(BIN)/test

$(TESTBIN)/lotse: $(GOFILES)
	$(GO) build -pgo=off -ldflags '$(LDFLAGS)' -o $@ ./cmd/lotse

$(TESTBIN)/lotsed: $(GOFILES)
	$(GO) build -pgo=off -ldflags '$(LDFLAGS)' -o $@ ./cmd/lotsed

# Every test, offline. -p 2: the test binaries that link trivy/syft/cosign
# need about 3.5 GB each to link. PostgreSQL (Debian's, installed when
# missing) runs on loopback for the store and lotsed tests; Chromium
# (Debian's, installed when missing) renders the board; gitlab-ci-local
# (npm, installed outside the repository when missing) runs the CI/CD
# components for real.
test: tools $(TESTBIN)/lotse $(TESTBIN)/lotsed
	scripts/check-format.sh
	scripts/cc.sh
	scripts/busybox.sh
	eval "$$(scripts/postgres.sh)" && \
	  GITLAB_CI_LOCAL="$$(scripts/gitlab-ci-local.sh)" LOTSE_CHROMIUM="$$(scripts/chromium.sh)" LOTSE_BIN=$(TESTBIN)/lotse LOTSED_BIN=$(TESTBIN)/lotsed \
	  PATH="$(TESTBIN):$(BIN):$$PATH" $(GO) test -pgo=off -p 2 -count=1 ./... && \
	  $(MAKE) --no-print-directory race
	$(MAKE) --no-print-directory promql
	$(GO) vet -pgo=off ./...

# The alert rules and the dashboard through Prometheus' own rule-file and
# PromQL parsers: webhook/deploy/promql is a module of its own, so that
# Prometheus' dependencies leave lotse's (and trivy's, syft's, cosign's)
# versions alone.
promql:
	cd webhook/deploy/promql && $(GO) test -count=1 ./... && $(GO) vet ./...

# The service and its store under the race detector (it needs cgo, so this
# is the one place built with CGO_ENABLED=1; webhook does not link trivy,
# syft or cosign, which keeps that second build small); the tests of the
# SBOM that share catalogs and layer indexes between goroutines, whose race
# build of syft takes about 2.5 minutes on two cores from an empty cache;
# and the followers that read a layer as it is written.
race:
	CGO_ENABLED=1 $(GO) test -race -pgo=off -count=1 ./webhook/ ./internal/store/
	CGO_ENABLED=1 $(GO) test -race -pgo=off -count=1 -run 'TestLastLayerWrittenWhileTheSBOMIsEncoded|TestLayersCatalogLikeTheWholeImage|TestIndexIsStereoscopes|TestFollowedIndexOnlyForItsFile' ./internal/sbom/
	CGO_ENABLED=1 $(GO) test -race -pgo=off -count=1 -run 'Follow' ./internal/oci/

lint:
	scripts/check-format.sh
	$(GO) vet -pgo=off ./...

# The whole flow on embedded defaults, offline: a loopback registry, the
# GitLab simulator, lotsed on SQLite, a sample image, a fixture vulnerability
# DB and a throwaway key: release, bump, promotion to staging and production.
demo: $(BIN)/lotse $(BIN)/lotsed
	$(GO) run ./test/demo -lotse $(BIN)/lotse -lotsed $(BIN)/lotsed

# lotse release against the chain of reference CLIs (syft, trivy, crane,
# cosign), built into a cache outside the repository; 50 concurrent bumps
# against the GitLab simulator; lotsed's webhook intake on SQLite and
# PostgreSQL.
bench: $(BIN)/lotse $(BIN)/lotsed
	scripts/bench.sh $(BIN)/lotse $(BIN)/lotsed

# Rewrites cmd/lotse/default.pgo: CPU profiles of lotse release on the bench
# images. Run it after changes to the release path, then rebuild.
pgo: $(BIN)/lotse
	$(GO) run ./test/bench -lotse $(BIN)/lotse -runs 5 -pgo cmd/lotse/default.pgo

clean:
	rm -rf $(BIN)
