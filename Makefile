# Two commands on a fresh machine (README): `make pipeline` runs the pipeline, `make test` the tests.
# Both create the virtual environment .venv first.
VENV ?= .venv
CONFIG ?= smoke
DATA ?=
CORES ?= $(shell nproc)
export PATH := $(abspath $(VENV))/bin:$(PATH)

.PHONY: setup pipeline test lock benchmark
setup: $(VENV)/.installed

# The environment is pinned: requirements.lock holds the exact version of every package.
$(VENV)/.installed: pyproject.toml requirements.lock
	python3 -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --upgrade pip
	$(VENV)/bin/pip install --quiet -r requirements.lock
	$(VENV)/bin/pip install --quiet --no-deps -e .
	touch $@

# Regenerate requirements.lock: the newest versions pyproject.toml's ranges allow, resolved in a fresh venv.
lock:
	rm -rf .venv-lock && python3 -m venv .venv-lock
	.venv-lock/bin/pip install --quiet --upgrade pip
	.venv-lock/bin/pip install --quiet torch==2.14.1 torchvision==0.29.1
	.venv-lock/bin/pip install --quiet '.[test]'
	{ sed -n '1,2p' requirements.lock; .venv-lock/bin/pip freeze --exclude-editable | grep -v '^featdefense'; } > requirements.lock.new
	mv requirements.lock.new requirements.lock && rm -rf .venv-lock

# CONFIG: smoke | cpu | paper (params.yaml as committed). DATA: a folder of offline copies, e.g. ../shared/data.
pipeline: setup
ifneq ($(DATA),)
	$(VENV)/bin/python scripts/offline_sources.py $(DATA)
endif
	git show HEAD:params.yaml > params.yaml  # start from the committed recipe, then apply CONFIG
	featdefense params apply $(if $(filter-out paper,$(CONFIG)),configs/$(CONFIG).yaml) $(if $(DATA),configs/offline.yaml)
	snakemake --profile workflow/profiles/local --cores $(CORES) all

# The benchmarks (docs/performance.md): PGD against ART's and torchattacks', the denoiser's training step,
# the attack stage's memory, AutoAttack's attacks one by one. torchattacks pins an old `requests`, so it
# goes to .bench/ (on the benchmark's path only), not into .venv.
benchmark: setup
	$(VENV)/bin/pip install --quiet --no-deps --target .bench torchattacks==3.5.1
	$(VENV)/bin/python benchmarks/pgd.py
	$(VENV)/bin/python benchmarks/denoiser.py
	$(VENV)/bin/python benchmarks/attack_memory.py
	$(VENV)/bin/python benchmarks/autoattack.py

test: setup
	$(VENV)/bin/python -m pytest -q -n 2 --dist worksteal --durations=15  # two workers: the pipeline tests run mostly one process at a time; the slowest 15 named
