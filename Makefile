# Two commands do everything on a fresh machine:
#   make run    split the data, save a picture of a batch, train the recipe that suits the machine into runs/, evaluate it
#   make test   lint the library (ruff), run every notebook (nbdev_test) and the pytest suite
# Both create the virtual environment in .venv on first use.
#   make model  retrain the committed default model (the cpu recipe) and promote it to models/default
SHELL := /bin/bash
.SHELLFLAGS := -eo pipefail -c
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
DATA ?= data/raw/chest_xray
SPLIT ?= data/processed/split.csv
SEED ?= 42
RUNS ?= runs
# the recipe that suits this machine: gpu where CUDA is available, cpu elsewhere (RECIPE=... to choose)
RECIPE ?= $(shell $(BIN)/python -c "import torch; print('gpu' if torch.cuda.is_available() else 'cpu')")
# optional overrides of the recipe's values
ARCH ?=
EPOCHS ?=
IMG_SIZE ?=
OVERRIDES = $(if $(ARCH),--arch $(ARCH)) $(if $(EPOCHS),--epochs $(EPOCHS)) $(if $(IMG_SIZE),--img_size $(IMG_SIZE))

.PHONY: install run test model clean-venv
install: $(VENV)/.installed

$(VENV)/.installed: setup.py settings.ini constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -c constraints.txt -e ".[dev]"
	touch $@

run: install
	$(BIN)/pneumonia_split --data $(DATA) --out $(SPLIT) --seed $(SEED)
	$(BIN)/pneumonia_show_batch --split $(SPLIT) --data $(DATA) --out data/processed/batch.png $(if $(IMG_SIZE),--size $(IMG_SIZE)) --seed $(SEED)
	run=$$($(BIN)/pneumonia_train --recipe $(RECIPE) --data $(DATA) --split $(SPLIT) --seed $(SEED) --out $(RUNS) $(OVERRIDES) | tee >(cat >&2) | tail -1) && \
	$(BIN)/pneumonia_eval "$$run" --data $(DATA)

test: install
	$(BIN)/ruff check pneumonia_nb
	HF_HUB_OFFLINE=1 $(BIN)/nbdev_test
	HF_HUB_OFFLINE=1 $(BIN)/pytest

model: install
	run=$$($(BIN)/pneumonia_train --recipe cpu --data $(DATA) --seed $(SEED) --out $(RUNS)/default | tee >(cat >&2) | tail -1) && \
	$(BIN)/pneumonia_eval "$$run" --data $(DATA) && \
	$(BIN)/pneumonia_promote "$$run" --name default --force

clean-venv:
	rm -rf $(VENV)
