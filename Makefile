# Two commands do everything on a fresh machine:
#   make run    fetch the data if it is missing, split it, save a picture of a batch, train the recipe that suits the
#               machine into runs/, evaluate it, and print a summary
#   make test   lint the library (ruff), run every notebook (nbdev_test) and the pytest suite
# Both create the virtual environment in .venv on first use.
#   make data   download the dataset into data/raw/chest_xray (pneumonia_download)
#   make test-data  derive the tests' real-film folders from it when there is no shared/data (make test does it on demand)
#   make serve  serve the newest promoted model (models/index.csv), or models/default (MODEL=... to choose)
#   make model  retrain the committed default model (the cpu_deep recipe: 26 to 90 minutes of training on 2 CPU
#               cores, as busy as they are) and promote it to models/default (the committed one: DATA=../shared/data/chest_xray_224
#               SIZES=../shared/data/chest_xray_orig, the films' real sizes for its reference)
#   make docs   build the documentation site into _docs/ and README.md from nbs/index.ipynb (nbdev_docs where Quarto is
#               installed, else pneumonia_docs: MkDocs over nbdev's processed notebooks, offline)
#   make image  build the container images (Containerfile): localhost/pneumonia_nb:latest (service and PACS watcher),
#               and the stack's Orthanc and Prometheus (compose.yaml); BASE=... CACERT=... for a machine without an
#               image registry (deploy/podman-host.sh makes the base and says what to pass)
#   make pictures  regenerate the README's pictures (nbs/images/) from the committed default model and reports
SHELL := /bin/bash
.SHELLFLAGS := -eo pipefail -c
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
DATA ?= data/raw/chest_xray
SPLIT ?= data/processed/split.csv
SEED ?= 42
RUNS ?= runs
# make model's recipe, and what chose it, for the card
MODEL_RECIPE ?= cpu_deep
CHOSEN_BY ?= issue 31's ranking study chose the cpu_deep recipe on the 103 chest_xray_site films (reports/ranking-study/: six cpu_deep trainings ranked them at ROC-AUC 0.976-0.987, the cpu recipe's three at 0.958-0.972; optimistic for them); seed 42 is make model's fixed seed, not picked among seeds; the threshold rule (sensitivity:0.95) was chosen on the same site films (13_site, issue 19)
# the recipe that suits this machine: gpu where CUDA is available, cpu elsewhere (RECIPE=... to choose)
RECIPE ?= $(shell $(BIN)/python -c "import torch; print('gpu' if torch.cuda.is_available() else 'cpu')")
# the input side the recipe trains at: the batch picture shows what the model sees
RECIPE_SIZE = $(shell $(BIN)/python -c "import yaml; print(yaml.safe_load(open('configs/recipes/$(RECIPE).yaml'))['img_size'])")
# optional overrides of the recipe's values
ARCH ?=
EPOCHS ?=
IMG_SIZE ?=
OVERRIDES = $(if $(ARCH),--arch $(ARCH)) $(if $(EPOCHS),--epochs $(EPOCHS)) $(if $(IMG_SIZE),--img_size $(IMG_SIZE))

# the newest promoted model, else models/default
MODEL ?= $(shell $(BIN)/python -c "import pandas as pd; i = pd.read_csv('models/index.csv'); print('models/' + i.sort_values('promoted')['name'].iloc[-1])" 2>/dev/null || echo models/default)

.PHONY: install data run test test-data serve model pictures docs clean-venv image
install: $(VENV)/.installed

$(VENV)/.installed: setup.py settings.ini constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -c constraints.txt -e ".[dev,cluster,docs]"
	touch $@

data: install
	@if [ -d "$(DATA)" ]; then echo "$(DATA) is there; nothing to download."; \
	elif [ "$(notdir $(DATA))" = chest_xray ]; then $(BIN)/pneumonia_download --dest $(patsubst %/,%,$(dir $(DATA))); \
	else echo "$(DATA) does not exist, and pneumonia_download only makes folders named chest_xray: run make data, or pass DATA=/path/to/chest_xray" >&2; exit 1; fi

run: install data
	$(BIN)/pneumonia_split --data $(DATA) --out $(SPLIT) --seed $(SEED)
	$(BIN)/pneumonia_show_batch --split $(SPLIT) --data $(DATA) --out data/processed/batch.png --img_size $(or $(IMG_SIZE),$(RECIPE_SIZE)) --seed $(SEED) --force
	run=$$($(BIN)/pneumonia_train --recipe $(RECIPE) --data $(DATA) --split $(SPLIT) --seed $(SEED) --runs $(RUNS) $(OVERRIDES) | tee >(cat >&2) | tail -1) && \
	$(BIN)/pneumonia_eval --model "$$run" --data $(DATA) && \
	$(BIN)/python -c "import sys; from pneumonia_nb.evaluate import run_summary; print(run_summary(*sys.argv[1:]))" "$$run" "$(MODEL)"


serve: install
	$(BIN)/pneumonia_serve --model $(MODEL)

# the README's pictures: a training batch and models/default's ROC, reliability and Grad-CAM on PICTURES_DATA's test
# split (the committed ones: PICTURES_DATA=../shared/data/chest_xray_sample), the recipe studies and the drift curve
PICTURES_DATA ?= $(DATA)
pictures: install
	tmp=$$(mktemp -d) && \
	$(BIN)/pneumonia_split --data $(PICTURES_DATA) --out $$tmp/split.csv --seed $(SEED) > /dev/null && \
	$(BIN)/pneumonia_show_batch --split $$tmp/split.csv --data $(PICTURES_DATA) --out nbs/images/batch.png --img_size 96 --seed $(SEED) --force && \
	$(BIN)/pneumonia_eval --model models/default --data $(PICTURES_DATA) --out $$tmp/eval > /dev/null && \
	for p in roc reliability gradcam; do cp $$tmp/eval/$$p.png nbs/images/default_$$p.png; done && rm -r $$tmp
	cd nbs && for nb in 08_recipes 09_monitor 13_site; do HF_HUB_OFFLINE=1 ../$(BIN)/nbdev_test --path $$nb.ipynb; done
	@ls -l nbs/images/*.png

# the container images: the service (also the PACS watcher) and the stack's Orthanc and Prometheus, one Containerfile
IMAGE ?= localhost/pneumonia_nb:latest
BASE ?=
CACERT ?=
comma := ,
BUILD = podman build --format docker $(if $(BASE),--build-arg BASE=$(BASE)) $(if $(CACERT),--secret id=cacert$(comma)src=$(CACERT))
image:
	$(BUILD) --target service -t $(IMAGE) --build-arg VERSION=$$(sed -n 's/^version = //p' settings.ini) \
	  --build-arg REVISION=$$(git rev-parse HEAD 2>/dev/null || echo unknown) .
	$(BUILD) --target orthanc -t localhost/pneumonia_nb-orthanc:latest .
	$(BUILD) --target prometheus -t localhost/pneumonia_nb-prometheus:latest .
	@podman images --filter reference='localhost/pneumonia_nb*'

# the site from the notebooks: Quarto's route where it is installed, else the offline one (nbs/15_docs.ipynb)
docs: install
	if command -v quarto >/dev/null; then $(BIN)/nbdev_docs; else $(BIN)/pneumonia_docs; fi

# the real films the notebooks and tests read: shared/data beside the project, else derived from the dataset in DATA
test-data: install
	$(BIN)/pneumonia_test_data --data $(DATA) --out data/processed/test_data

test: install
	@$(BIN)/python -c "from pneumonia_nb.core import shared_data; shared_data()" 2>/dev/null || [ ! -d "$(DATA)" ] || $(MAKE) test-data
	$(BIN)/ruff check pneumonia_nb
	OMP_NUM_THREADS=1 HF_HUB_OFFLINE=1 $(BIN)/nbdev_test $(if $(shell command -v Orthanc),--flags orthanc)   # one notebook a core, one torch thread each
	HF_HUB_OFFLINE=1 $(BIN)/pytest

model: install
	run=$$($(BIN)/pneumonia_train --recipe $(MODEL_RECIPE) --data $(DATA) --seed $(SEED) --runs $(RUNS)/default | tee >(cat >&2) | tail -1) && \
	$(BIN)/pneumonia_eval --model "$$run" --data $(DATA) && \
	$(BIN)/pneumonia_promote --model "$$run" --name default --force --chosen_by "$(CHOSEN_BY)"
	$(if $(SIZES),$(BIN)/pneumonia_reference --model models/default --data $(DATA) --sizes_from $(SIZES) --force)

clean-venv:
	rm -rf $(VENV)
