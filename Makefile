# Two commands do everything on a fresh machine:
#   make run    split the data, save a picture of a batch, train a model into runs/ and evaluate it (DATA=, ARCH=, ...)
#   make test   lint the library (ruff), run every notebook (nbdev_test) and the pytest suite
# Both create the virtual environment in .venv on first use.
SHELL := /bin/bash
.SHELLFLAGS := -eo pipefail -c
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
DATA ?= data/raw/chest_xray
SPLIT ?= data/processed/split.csv
SEED ?= 42
ARCH ?= resnet18
EPOCHS ?= 10
IMG_SIZE ?= 224
RUNS ?= runs

.PHONY: install run test clean-venv
install: $(VENV)/.installed

$(VENV)/.installed: setup.py settings.ini constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -c constraints.txt -e ".[dev]"
	touch $@

run: install
	$(BIN)/pneumonia_split --data $(DATA) --out $(SPLIT) --seed $(SEED)
	$(BIN)/pneumonia_show_batch --split $(SPLIT) --data $(DATA) --out data/processed/batch.png --size $(IMG_SIZE) --seed $(SEED)
	run=$$($(BIN)/pneumonia_train --data $(DATA) --split $(SPLIT) --arch $(ARCH) --epochs $(EPOCHS) --img_size $(IMG_SIZE) --seed $(SEED) --out $(RUNS) | tee /dev/stderr | tail -1) && \
	$(BIN)/pneumonia_eval "$$run" --data $(DATA)

test: install
	$(BIN)/ruff check pneumonia_nb
	HF_HUB_OFFLINE=1 $(BIN)/nbdev_test
	HF_HUB_OFFLINE=1 $(BIN)/pytest

clean-venv:
	rm -rf $(VENV)
