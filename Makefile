# The README's two commands: `make demo` (set up + segment real images through the C++
# runtime) and `make test` (set up + pytest + ctest + the standalone C++ example).
# Set-up is idempotent: a second run only rebuilds what changed.

PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
DATA ?= $(abspath ../shared/data)
TORCH_PIN := torch==2.13.0
BUILD_DIR = build/$(shell $(PY) -c 'import sys; print(sys.implementation.cache_tag)')
export CMAKE_BUILD_PARALLEL_LEVEL ?= 2
export IFA_RT_DATA ?= $(DATA)

# One dependency list: pyproject.toml. $(call pyproject,KEY...) prints the list at that key,
# each requirement quoted for the shell (torch stays pinned by TORCH_PIN beside it).
pyproject = $(shell $(PYTHON) -c "import sys, tomllib; d = tomllib.load(open('pyproject.toml', 'rb')); \
  [d := d[k] for k in sys.argv[1:]]; print(' '.join(repr(r) for r in d))" $(1))

.PHONY: setup demo test pytest ctest example cuda-check sanitize fuzz fuzz-replay soak lint format clean model

# Debian packages: ccache (fast rebuilds), stb (image IO for the C++ tools), zlib (CRC-32
# checks of artifacts before LibTorch reads them), nlohmann/json (the metadata's JSON),
# clang-format (make format / its check in make test), chromium (the browser test of the
# service's page, driven by Playwright).
SYSTEM_PACKAGES := ccache libstb-dev zlib1g-dev nlohmann-json3-dev clang-format chromium
$(VENV)/.system-deps:
	@command -v ccache >/dev/null && dpkg -s $(SYSTEM_PACKAGES) >/dev/null 2>&1 || \
	  { apt-get update -qq && apt-get install -y -qq $(SYSTEM_PACKAGES) >/dev/null; }
	@mkdir -p $(VENV) && touch $@

$(VENV)/.python-deps: pyproject.toml | $(VENV)/.system-deps
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q $(TORCH_PIN) $(call pyproject,build-system requires) ninja
	$(PY) -m pip install -q $(TORCH_PIN) $(call pyproject,project dependencies) \
	  $(call pyproject,project optional-dependencies test) \
	  $(call pyproject,project optional-dependencies dev)
	@touch $@

# The extension builds against the torch installed in the venv (no build isolation);
# the C++ tests are built in the same build tree so ctest runs what pip installed.
setup: $(VENV)/.python-deps
	IFA_RT_BUILD_TESTS=ON $(PY) -m pip install -q --no-build-isolation --no-deps -e .

demo: setup
	$(VENV)/bin/ifa-rt segment --model camvid "$(DATA)/camvid/images/val" -o out/demo

pytest: setup lint
	$(PY) -m pytest -q

ctest: setup
	ctest --test-dir $(BUILD_DIR) --output-on-failure

example: setup
	PYTHON=$(PY) bash scripts/build_cpp_example.sh

# The CUDA engine compiled against the CUDA build of torch (a 4.7 GB venv, downloaded once),
# so it cannot rot on machines without a GPU; IFA_RT_SKIP_CUDA_CHECK=1 skips it.
cuda-check:
	bash scripts/cuda_compile_check.sh

# Each step writes its outcome into $(REPORT); the last line says what passed and what was
# skipped, and why (scripts/test_summary.py).
REPORT := build/test-report
test: setup lint
	@rm -rf $(REPORT) && mkdir -p $(REPORT)
	$(PY) -m pytest -q --junitxml=$(REPORT)/pytest.xml
	ctest --test-dir $(BUILD_DIR) --output-on-failure --output-junit $(abspath $(REPORT))/ctest.xml
	PYTHON=$(PY) bash scripts/build_cpp_example.sh
	IFA_RT_TEST_REPORT=$(abspath $(REPORT)) $(MAKE) cuda-check
	@$(PY) scripts/test_summary.py $(REPORT)

# Long reliability runs (docs/reliability.md): not part of `make test`.
sanitize: setup
	bash scripts/sanitizers.sh

fuzz: setup  # needs clang-14 and libclang-rt-14-dev
	bash fuzz/run_fuzz.sh 300 300

fuzz-replay: setup
	bash fuzz/run_fuzz.sh 0 0

# The bundled model from data to artifact, in one command (~2 h on 2 CPU cores: 96 + 15 min
# of training (docs/model-card.md), then export, int8 calibration and the gates):
#   1. train the recipe camvid-lite0 with one recording held out, and evaluate that stage on
#      it (per-class IoU, confusion matrix): the model card's validation figures;
#   2. continue on every frame (camvid-lite0-all), ship that checkpoint, export the artifact
#      from that very file (its sha256 goes into the metadata);
#   3. write the int8 recipe and the bf16 gate of the shipped artifact.
MODEL_RUN ?= runs/camvid
BUNDLED := python/ifa_rt/bundled
HOLDOUT = $(shell $(PY) -c "from ifa_rt.recipes import load_recipe; print(*load_recipe('camvid-lite0')['holdout'])")
model: setup
	$(VENV)/bin/ifa-rt train --config camvid-lite0 --out $(MODEL_RUN)
	$(VENV)/bin/ifa-rt eval --checkpoint $(MODEL_RUN)/final.pt --split train+val \
	  --sequences $(HOLDOUT) --out $(MODEL_RUN)/eval_holdout
	$(VENV)/bin/ifa-rt train --config camvid-lite0-all --init $(MODEL_RUN)/final.pt \
	  --out $(MODEL_RUN)-all
	cp $(MODEL_RUN)-all/final.pt $(BUNDLED)/camvid.ckpt.pt
	$(VENV)/bin/ifa-rt export --checkpoint $(BUNDLED)/camvid.ckpt.pt -o $(BUNDLED)/camvid.ifa.pt
	$(VENV)/bin/ifa-rt quantize --model camvid --shapes 360x480 --threads 2 \
	  --calibration-count 100 --gate-split train+val --gate-sequences $(HOLDOUT) \
	  -o $(MODEL_RUN)/camvid-int8.pt2 --save-calibration $(BUNDLED)/camvid.int8.pt
	$(VENV)/bin/ifa-rt quantize --precision bf16 --model camvid --gate-split train+val \
	  --gate-sequences $(HOLDOUT) -o $(BUNDLED)/camvid.bf16.json

soak: setup
	$(PY) scripts/soak.py --calls 10000 --json out/soak.json

# Style: ruff (lint + format) for Python, clang-format (.clang-format) for C++.
CXX_SOURCES = $(shell git ls-files 'cpp/*.cpp' 'cpp/*.h' 'fuzz/*.cpp' 'examples/*.cpp' 'examples/*.h')
lint: $(VENV)/.python-deps
	$(PY) -m ruff check python tests scripts
	$(PY) -m ruff format --check -q python tests scripts
	clang-format --dry-run -Werror $(CXX_SOURCES)

format: $(VENV)/.python-deps
	$(PY) -m ruff format -q python tests scripts
	clang-format -i $(CXX_SOURCES)

clean:
	rm -rf build out
