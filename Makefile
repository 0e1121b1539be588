# Two commands do everything on a fresh machine: `make demo` and `make test`.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
RT_VENV ?= .venv-runtime
PY := $(VENV)/bin/python
RT_PY := $(RT_VENV)/bin/python
EDGEXFER := $(VENV)/bin/edgexfer
STAMP := $(VENV)/.edgexfer-installed
RT_STAMP := $(RT_VENV)/.edgexfer-installed
DEMO ?= demo
TEST_BUNDLE := $(CURDIR)/.cache/test-bundle
export TF_CPP_MIN_LOG_LEVEL ?= 2

.PHONY: setup setup-runtime demo test test-fast benchmarks clean

# Full environment: training, export, the CPU runtimes and the test tools.
$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[train,cpu,dev]'
	touch $@

# Device-like environment: edgexfer[cpu] and the test runner only, no TensorFlow.
$(RT_STAMP): pyproject.toml
	test -x $(RT_PY) || $(PYTHON) -m venv $(RT_VENV)
	$(RT_PY) -m pip install -q --upgrade pip
	$(RT_PY) -m pip install -q -e '.[cpu]' 'pytest>=8' 'pytest-timeout>=2.3'
	touch $@

setup: $(STAMP)

setup-runtime: $(RT_STAMP)

# The main job on the defaults: real photos (builtin:textures, written out as an image folder the way a user
# brings one), the offline ImageNet EfficientNet-Lite0 at 224 px, every format with parity, predict, bench.
demo: setup
	rm -rf $(DEMO)
	$(EDGEXFER) data export builtin:textures $(DEMO)/images
	$(EDGEXFER) train $(DEMO)/images --out $(DEMO)/run --force
	$(EDGEXFER) export $(DEMO)/run --out $(DEMO)/bundle
	$(EDGEXFER) predict $(DEMO)/bundle $(DEMO)/images/test/gravel --top-k 2
	$(EDGEXFER) bench $(DEMO)/bundle --batch-sizes 1,8 --runs 30 --seconds 1 --data $(DEMO)/images --tune

# The whole suite in the full environment, then the export/parity tests again with oneDNN held to AVX2
# (int8/fp16 numerics differ between AVX2 and AVX-512 CPUs: the gates must hold on both; on a CPU without
# AVX-512 the first pass already was the AVX2 one, so it is not repeated), then the
# runtime tests again without TensorFlow installed, all against one bundle built here.
test: setup setup-runtime
	rm -rf $(TEST_BUNDLE)
	$(PY) tests/runtime/make_bundle.py $(TEST_BUNDLE)
	EDGEXFER_TEST_BUNDLE=$(TEST_BUNDLE) $(PY) -m pytest -q
	if grep -qw avx512f /proc/cpuinfo 2>/dev/null; then \
	  ONEDNN_MAX_CPU_ISA=AVX2 EDGEXFER_TEST_BUNDLE=$(TEST_BUNDLE) $(PY) -m pytest -q tests/export -p no:cacheprovider; \
	else echo "AVX2 pass skipped: this CPU has no AVX-512, so the run above already used AVX2 kernels"; fi
	EDGEXFER_TEST_BUNDLE=$(TEST_BUNDLE) $(RT_PY) -m pytest -q -m runtime tests/runtime tests/test_light_imports.py tests/test_parity.py -p no:cacheprovider
	PYTHON=$(PY) scripts/wheel_check.sh

# The inner loop: everything not marked slow (a test over ~5 s: trains, exports, heavy subprocesses), in the
# full environment (no second passes, no wheel), on the test bundle of the last `make test` / `make test-fast`,
# built again only when it is missing or older than the code that makes it (all but edgexfer/cli and edgexfer/bench).
BUNDLE_SOURCES = edgexfer/*.py edgexfer/data edgexfer/train edgexfer/export edgexfer/runtime tests/factory.py
test-fast: setup
	@if [ ! -f $(TEST_BUNDLE)/manifest.json ] || \
	    [ -n "$$(find $(BUNDLE_SOURCES) -name '*.py' -newer $(TEST_BUNDLE)/manifest.json | head -1)" ]; then \
	    rm -rf $(TEST_BUNDLE) && $(PY) tests/runtime/make_bundle.py $(TEST_BUNDLE); fi
	EDGEXFER_TEST_BUNDLE=$(TEST_BUNDLE) $(PY) -m pytest -q -m "not slow"

benchmarks: setup
	cd benchmarks && for s in bench_photos bench_demo bench_train_cache bench_multiworker bench_export bench_formats \
	    bench_overhead bench_cold_start bench_keras_vs_runtime bench_auto; do ../$(PY) $$s.py || exit 1; done
	$(MAKE) transfer-benchmark
	$(PY) benchmarks/readme_tables.py

# Transfer quality (k-shot grid, 3 seeds, both targets): one process per target domain, then merge.
.PHONY: transfer-benchmark
transfer-benchmark: setup
	cd benchmarks && ( ../$(PY) bench_transfer.py --domains uci_digits --part transfer_uci_digits --threads 1 & \
	    ../$(PY) bench_transfer.py --domains mnist_m --part transfer_mnist_m --threads 1; s=$$?; wait $$! && test $$s = 0 )
	cd benchmarks && ../$(PY) bench_transfer.py --merge transfer_uci_digits transfer_mnist_m

clean:
	rm -rf $(VENV) $(RT_VENV) $(DEMO) .cache .pytest_cache

# ARM64 without hardware: the runtime on the demo bundle's tflite, tflite-int8 and onnx artifacts inside an
# emulated aarch64 Debian (debootstrap + qemu-user-static, cached in /var/cache/edgexfer-arm64), checked
# against x86; writes benchmarks/results/arm64_check.json. Needs root and `make demo`; not part of `make test`.
.PHONY: arm64-check
arm64-check: setup
	PY=$(CURDIR)/$(PY) deploy/arm64/check.sh
