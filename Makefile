# PaintGuard: `make demo` and `make test` set everything up on a fresh clone.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# The CPU build lies on local disk here; GPU users override, e.g. TORCH_SPEC="torch==2.13.0+cu128 --index-url ..."
TORCH_SPEC ?= torch==2.13.0
STAMP := $(VENV)/.paintguard-setup
TORCH_STAMP := $(VENV)/.torch-spec
PIP := $(BIN)/python -m pip install --quiet --disable-pip-version-check
# OpenMP threads that spin while waiting starve every other process on a small shared CPU
export OMP_WAIT_POLICY ?= PASSIVE
PAINTGUARD ?= $(BIN)/paintguard
# ONNX exports are built here from the safetensors checkpoints, never committed (a stale one cannot exist)
ONNX_DIR := build/onnx
GENERATORS := generator-lama-tiny generator-lama-tiny-stem generator-lama-tiny-fast generator-lama-tiny-robust
# the web page runs the default generator up to 4.2 MP (web/models.json) and the fast one above: the default exports
# as one graph whose 32-channel full-resolution tensors take 5813 MiB at 3840x2160 in onnxruntime (13128 before
# generator/transpose.py), beyond WebAssembly's 4 GB (torch runs them in bands)
WEB_GENERATOR ?= generator-lama-tiny
WEB_LARGE_GENERATOR ?= generator-lama-tiny-fast
# the inpainter of the page's editor view ("See what an editor gets"): an inpainter checkpoint's name
WEB_INPAINTER ?= lama-tiny
WEB_DIST := web/dist
ORT_DIST := web/node_modules/onnxruntime-web/dist
# the ESM build with WebGPU and its WebAssembly runtime: all the page loads from onnxruntime-web
ORT_FILES := ort.min.mjs ort-wasm-simd-threaded.jsep.mjs ort-wasm-simd-threaded.jsep.wasm
# web/src itself too: its date moves when a file is removed, which the list of files cannot show
WEB_FILES := web/index.html web/style.css web/models.json web/src $(wildcard web/src/*.js)
EXPORT_CODE := generator/onnx_export.py generator/onnx_meta.py generator/unet.py generator/stem_head.py generator/encoder_head.py \
	generator/transpose.py generator/real_fft.py trainer/inpainting/ffc.py trainer/inpainting/inpainter.py

.PHONY: setup test demo benchmark benchmark-onnx photos editor-photos clean onnx web web-generators FORCE tests \
	benchmarks

setup: $(STAMP)

# torch goes in first: a bare `torch` requirement would otherwise pull several GB of CUDA wheels; the spec
# installed is recorded, so that `make setup TORCH_SPEC=...` (a GPU build, say) installs it into an existing .venv
$(TORCH_STAMP): FORCE
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	@echo '$(TORCH_SPEC)' | cmp -s - $@ || { $(PIP) $(TORCH_SPEC) && echo '$(TORCH_SPEC)' > $@; }

$(STAMP): pyproject.toml Makefile $(TORCH_STAMP)
	$(PIP) -e ".[dev]"
	@touch $@

test: setup web
	$(BIN)/python -m pytest

# ONNX files of the shipped generators (paintguard export-onnx checks each against PyTorch)
onnx: $(GENERATORS:%=$(ONNX_DIR)/%.onnx)

$(ONNX_DIR)/%.onnx: checkpoints/%.safetensors $(EXPORT_CODE) | $(STAMP)
	@mkdir -p $(@D)
	$(PAINTGUARD) export-onnx $< -o $@ --overwrite

# the in-browser page: its files, onnxruntime-web (npm, versions from web/package-lock.json) and the model
web: web-generators $(WEB_DIST)/model.onnx $(WEB_DIST)/model-large.onnx $(WEB_DIST)/inpainter.onnx $(WEB_DIST)/.files

# first, so that a name with no checkpoint is said in words, not as "No rule to make target 'build/onnx/...'", and
# a generator given as the inpainter (or the other way) is refused before it replaces the page's model
web-generators: | $(STAMP)
	@$(BIN)/python -m generator.web_server WEB_GENERATOR=$(WEB_GENERATOR) \
		WEB_LARGE_GENERATOR=$(WEB_LARGE_GENERATOR) WEB_INPAINTER=$(WEB_INPAINTER)

$(ORT_DIST)/ort.min.mjs: web/package.json web/package-lock.json
	cd web && npm ci --ignore-scripts --no-audit --no-fund
	@touch $@

$(WEB_DIST)/.files: $(WEB_FILES) $(ORT_DIST)/ort.min.mjs
	rm -rf $(WEB_DIST)/src $(WEB_DIST)/ort
	mkdir -p $(WEB_DIST)/src $(WEB_DIST)/ort
	cp web/index.html web/style.css web/models.json $(WEB_DIST)/
	cp web/src/*.js $(WEB_DIST)/src/
	cp $(addprefix $(ORT_DIST)/,$(ORT_FILES)) $(WEB_DIST)/ort/
	@touch $@

# compared on every build, not by date: a page built with WEB_GENERATOR=mine goes back to the default with a
# plain 'make web', although the default's export is older than the page's copy
$(WEB_DIST)/model.onnx: $(ONNX_DIR)/$(WEB_GENERATOR).onnx FORCE
	@mkdir -p $(@D)
	@cmp -s $< $@ || { echo "cp $< $@"; cp $< $@; }

$(WEB_DIST)/model-large.onnx: $(ONNX_DIR)/$(WEB_LARGE_GENERATOR).onnx FORCE
	@mkdir -p $(@D)
	@cmp -s $< $@ || { echo "cp $< $@"; cp $< $@; }
$(WEB_DIST)/inpainter.onnx: $(ONNX_DIR)/$(WEB_INPAINTER).onnx FORCE
	@mkdir -p $(@D)
	@cmp -s $< $@ || { echo "cp $< $@"; cp $< $@; }

FORCE:

demo: setup
	$(BIN)/paintguard demo --out outputs/demo

# the optimiser's seconds per image on big-lama and lama-tiny (about 5 minutes on one thread); ARGS are passed on
benchmark: setup
	$(BIN)/python benchmarks/optimizer_speed.py $(ARGS)

# torch vs onnxruntime (and the web page in headless Chromium): time, peak memory, int8; about 23 minutes and
# 20 GB at its peak (int8 at 3840x2160). ARGS are passed on: ARGS="--runs 1 --rounds 1 --no-web" is shorter
benchmark-onnx: setup web
	$(BIN)/python benchmarks/onnx_speed.py $(ARGS)

# lama-tiny's training photos, from Debian's archive (needs apt-get; see checkpoints/README.md)
photos: setup
	@test -d data/photos || $(BIN)/python scripts/debian_photos.py data/photos

# lama-tiny-ft's fine-tuning photos, of other kinds than lama-tiny's, from other Debian packages (needs apt-get)
editor-photos: setup
	@test -d data/editor-photos || $(BIN)/python scripts/editor_photos.py data/editor-photos

# folders of that name, not targets: `make tests` said "Nothing to be done", which looked like a passing `make test`
tests benchmarks:
	@echo "make: no target '$@'; did you mean '$(@:s=)'?" >&2; exit 2

# what the build and the demo made; runs/ (training runs, caches, W&B logs) and the photos are work, kept
clean:
	rm -rf outputs .pytest_cache build paintguard.egg-info $(WEB_DIST)
	find . \( -path ./$(VENV) -o -path ./web/node_modules -o -path ./data \) -prune -o -name __pycache__ -type d \
		-exec rm -rf {} +
