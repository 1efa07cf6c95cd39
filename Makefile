# affgd — build, test and benchmark. `make demo` and `make test` work on a fresh Debian machine.
SHELL := /bin/bash
.DEFAULT_GOAL := build

REQ_HASH := $(shell sha1sum tests/requirements.txt | cut -c1-12)
# The venv lives outside the clone, keyed by the pinned versions, so fresh clones reuse it.
VENV ?= $(HOME)/.cache/affgd/venv-$(REQ_HASH)
PYTHON := $(VENV)/bin/python
# LIBTORCH overrides the libtorch to build against (any libtorch folder or PyTorch install).
LIBTORCH ?=
BUILD := build
TESTDATA := $(CURDIR)/tests/testdata
GOTEST_FLAGS ?= -count=1
export AFFGD_TESTDATA := $(TESTDATA)
export AFFGD_PYTHON := $(PYTHON)
export AFFGD_VENV := $(VENV)

# The affgd commit recorded in bin/affgd (its reports show it): the full hash, "-dirty" with
# uncommitted changes; empty outside a git checkout, where the binary falls back to Go's VCS stamp
# and then to "unknown" (internal/buildinfo).
AFFGD_COMMIT := $(shell git describe --always --dirty --abbrev=40 --match=no-tags 2>/dev/null)
GO_LDFLAGS := -X github.com/affgd/affgd/internal/buildinfo.commit=$(AFFGD_COMMIT)

SHIM_SRC := $(wildcard torch/csrc/*.cpp torch/csrc/*.h) CMakeLists.txt
GENERATORS := $(wildcard tests/*/gen_*.py)
# One stamp per generator: tests/testdata/<suite>/.stamp, remade when its script changes.
STAMPS := $(foreach g,$(GENERATORS),$(TESTDATA)/$(notdir $(patsubst %/,%,$(dir $(g))))/.stamp)

.PHONY: deps build shim test testdata bench demo rss-short rss-long clean gpu-check gpu-bundle FORCE
FORCE:

deps:
	@VENV=$(VENV) LIBTORCH=$(LIBTORCH) scripts/deps.sh
	@scripts/deps-browser.sh

# The resolved libtorch folder; rewritten only when it changes, so a new venv or LIBTORCH
# reconfigures and rebuilds the shim (its rpath names that folder).
LIBTORCH_DIR = $(shell readlink -f $(if $(LIBTORCH),$(LIBTORCH),third_party/libtorch/libtorch))
$(BUILD)/libtorch.path: FORCE
	@mkdir -p $(BUILD)
	@echo "$(LIBTORCH_DIR)" | cmp -s - $@ || echo "$(LIBTORCH_DIR)" > $@

$(BUILD)/Makefile: CMakeLists.txt $(BUILD)/libtorch.path
	cmake -S . -B $(BUILD) -DCMAKE_BUILD_TYPE=Release -DLIBTORCH=$(LIBTORCH_DIR)

$(BUILD)/libaffgd_torch.so: $(BUILD)/Makefile $(SHIM_SRC)
	cmake --build $(BUILD) -j$$(nproc)
	@touch $@

shim: $(BUILD)/libaffgd_torch.so

build: deps shim
	go build ./...
	@mkdir -p bin && go build -ldflags "$(GO_LDFLAGS)" -o bin/affgd ./cmd/affgd

# Reference data made by our own generator scripts in the pinned torch.
define GEN_RULE
$(TESTDATA)/$(notdir $(patsubst %/,%,$(dir $(1))))/.stamp: $(1) $(wildcard $(dir $(1))*.py)
	@mkdir -p $$(dir $$@)
	$$(PYTHON) $(1) --out $$(dir $$@)
	@touch $$@
endef
$(foreach g,$(GENERATORS),$(eval $(call GEN_RULE,$(g))))
# The method's reference builds on the backbones' reference modules.
$(TESTDATA)/method/.stamp: tests/dino/gen_dino.py tests/clip/gen_clip.py
$(TESTDATA)/checkpoint/.stamp: tests/method/ref_step.py tests/dino/gen_dino.py tests/clip/gen_clip.py
$(TESTDATA)/eval/.stamp: tests/checkpoint/gen_checkpoint.py tests/checkpoint/refnet.py tests/method/ref_step.py tests/metrics/gen_metrics.py tests/dino/gen_dino.py tests/clip/gen_clip.py

testdata: deps $(STAMPS)

test: build testdata
	go vet ./...
	go test $(GOTEST_FLAGS) ./...
	go test -race $(GOTEST_FLAGS) -run 'Concurrent|ScopeRules|ScopeKeep|ScopeClose' ./torch/

bench: build testdata
	go test -run '^$$' -bench . -benchtime 2s ./...

# The HTML report on a 1,680-image synthetic test set: drawing cost, size, time to open (docs/BENCHMARKS.md).
.PHONY: bench-report
bench-report: build
	scripts/bench-report.sh

demo: build
	scripts/demo.sh

# The long form of the resident-memory check (docs/BENCHMARKS.md, "Resident memory"): 1,000 steps
# at the demo's settings and 100 at full size, each held to < 2 % growth after warm-up; CSVs,
# summaries and RSS curves (PNG) in docs/rss/. Heavy: run it alone. RSS_STEPS=demo:N,full:M
# shortens it.
RSS_STEPS ?=
# The short form alone (trainer's TestTrainingRSSFlat, ~1 min, also part of `make test`), with
# its figures per memory source.
rss-short: build
	nice go test -count=1 -run 'TestTrainingRSSFlat$$' -v ./trainer/
rss-long: build
	AFFGD_RSS_LONG=$(CURDIR)/docs/rss AFFGD_RSS_STEPS=$(RSS_STEPS) nice go test -count=1 -timeout 0 -run 'TestTrainingRSSLong' -v ./trainer/

# What scripts/gpu-check.sh needs on a machine with PyTorch+CUDA+cmake+g++ but no Go and no
# network, under gpu-bundle/ (ignored, never committed): the Go test binaries of the computing
# packages, bin/affgd, the reference data that fits, the released checkout and the pure-Python
# packages the released code and the generators import (scripts/gpu-bundle.sh says what and why).
# RELEASED_MIRROR is the git mirror of hynnsk/SelectiveCL.
RELEASED_MIRROR ?= /work/.mirror/hynnsk+SelectiveCL/repo
gpu-bundle: build testdata
	RELEASED_MIRROR=$(RELEASED_MIRROR) VENV=$(VENV) scripts/gpu-bundle.sh

# On the GPU machine (or here with ARGS="--device cpu --quick"): see scripts/gpu-check.sh.
gpu-check:
	scripts/gpu-check.sh $(ARGS)

clean:
	rm -rf $(BUILD) bin $(TESTDATA)
