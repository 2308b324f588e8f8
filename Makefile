# PaintGuard: `make demo` and `make test` set everything up on a fresh clone.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# The CPU build lies on local disk here; GPU users override, e.g. TORCH_SPEC="torch==2.13.0+cu128 --index-url ..."
TORCH_SPEC ?= torch==2.13.0
STAMP := $(VENV)/.paintguard-setup
PIP := $(BIN)/python -m pip install --quiet --disable-pip-version-check
# OpenMP threads that spin while waiting starve every other process on a small shared CPU
export OMP_WAIT_POLICY ?= PASSIVE

.PHONY: setup test demo benchmark photos clean

setup: $(STAMP)

# torch goes in first: a bare `torch` requirement would otherwise pull several GB of CUDA wheels
$(STAMP): pyproject.toml Makefile
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	@$(BIN)/python -c "import torch" 2>/dev/null || $(PIP) $(TORCH_SPEC)
	$(PIP) -e ".[dev]"
	@touch $@

test: setup
	$(BIN)/python -m pytest

demo: setup
	$(BIN)/paintguard demo --out outputs/demo

benchmark: setup
	$(BIN)/python benchmarks/optimizer_speed.py

# lama-tiny's training photos, from Debian's archive (needs apt-get; see checkpoints/README.md)
photos: setup
	test -d data/photos || $(BIN)/python scripts/debian_photos.py data/photos

clean:
	rm -rf outputs runs .pytest_cache
