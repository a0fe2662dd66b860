# Two commands matter: `make run` (execute the notebook, full profile) and `make test`.
# Both create .venv, install requirements.txt and prepare the data when needed.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
INSTALLED := $(VENV)/.installed-requirements
NOTEBOOK := Assignment3_Q1.ipynb
RAW := data/FashionMNIST/raw

.PHONY: run test unit nbval data pdf-tools bench pdf clean

$(INSTALLED): requirements.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet -r requirements.txt
	cp requirements.txt $@

# The data: already here, FASHION_MNIST_DIR, Debian's package (installed here when we are root
# with apt and nothing else is available), or torchvision's download.
data: $(INSTALLED)
	@if [ ! -f $(RAW)/train-images-idx3-ubyte ] && [ -z "$${FASHION_MNIST_DIR:-}" ] \
	    && [ ! -f /usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz ] \
	    && command -v apt-get >/dev/null && [ "$$(id -u)" = 0 ]; then \
	  echo "Installing Debian's dataset-fashion-mnist (works offline)"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq dataset-fashion-mnist >/dev/null; \
	fi
	$(PY) -m helpers.data

run: data
	@echo "Executing $(NOTEBOOK) with the full profile (about 16 min on 2 CPU cores; from cached results/ under 1 min)"
	A3_PROFILE=full A3_PROGRESS=0 $(PY) -m jupyter nbconvert --to notebook --execute --inplace \
	  --ExecutePreprocessor.timeout=-1 $(NOTEBOOK)

test: unit nbval

unit: data pdf-tools
	$(PY) -m pytest tests

nbval: data
	A3_PROFILE=quick A3_RERUN=1 A3_PROGRESS=0 $(PY) -m pytest --nbval-lax -p no:cacheprovider $(NOTEBOOK)

# Chromium prints the PDF; poppler-utils (pdftotext, pdfimages) lets the tests read it back.
pdf-tools:
	@if ! command -v chromium >/dev/null || ! command -v pdftotext >/dev/null; then \
	  if command -v apt-get >/dev/null && [ "$$(id -u)" = 0 ]; then \
	    echo "Installing chromium and poppler-utils (for make pdf)"; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium poppler-utils >/dev/null; \
	  else \
	    echo "make pdf needs Chromium and poppler-utils: sudo apt-get install chromium poppler-utils"; exit 1; \
	  fi; \
	fi

pdf: $(INSTALLED) pdf-tools
	$(PY) tools/pdf.py

bench: data
	$(PY) benchmarks/bench.py

clean:
	rm -rf results/quick .pytest_cache
