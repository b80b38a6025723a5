# Two commands on a fresh machine (README): `make pipeline` runs the pipeline, `make test` the tests.
# Both create the virtual environment .venv first.
VENV ?= .venv
CONFIG ?= smoke
DATA ?=
CORES ?= $(shell nproc)
export PATH := $(abspath $(VENV))/bin:$(PATH)

.PHONY: setup pipeline test
setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	python3 -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --upgrade pip
	$(VENV)/bin/pip install --quiet torch==2.14.1 torchvision==0.29.1
	$(VENV)/bin/pip install --quiet -e '.[test]'
	touch $@

# CONFIG: smoke | cpu | paper (params.yaml as committed). DATA: a folder of offline copies, e.g. ../shared/data.
pipeline: setup
ifneq ($(DATA),)
	$(VENV)/bin/python scripts/offline_sources.py $(DATA)
endif
	git show HEAD:params.yaml > params.yaml  # start from the committed recipe, then apply CONFIG
	featdefense params apply $(if $(filter-out paper,$(CONFIG)),configs/$(CONFIG).yaml) $(if $(DATA),configs/offline.yaml)
	snakemake --cores $(CORES) all

test: setup
	$(VENV)/bin/python -m pytest -q
