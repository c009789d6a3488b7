# rs_ghost_qgis: every task starts from a fresh Debian 12 machine. `make demo` and `make test`
# are the two commands the README promises; both run the idempotent set-up first.
PY := .venv/bin/python
export QT_QPA_PLATFORM ?= offscreen
SHARED ?= ../shared/data

# make train runs a recipe (recipes/*.toml holds every hyper-parameter of a shipped model; the
# default is the bundled student's). Variables given here override it: DATA, GSD (metres per
# pixel of your patches; EuroSAT's 10 m is known), STUDENT, DISTILL, EPOCHS, SEED, SOFT_LABELS
# (a teacher's committed logits), LIMIT_PER_CLASS; ARGS passes any other `run` flag.
EUROSAT := $(wildcard $(SHARED)/eurosat_rgb)
DATA ?= $(EUROSAT)
RECIPE ?= recipes/eurosat_g_ghost_002_adamw.toml
STUDENT ?=
DISTILL ?=
EPOCHS ?=
TEACHER_EPOCHS ?=
LIMIT_PER_CLASS ?=
GSD ?=
ARGS ?=
SEED ?=
SOFT_LABELS ?=
# Runs live beside the checkout, so they survive a fresh clone; commit only small artefacts.
RUNS ?= ../rs_ghost_runs
OUT ?= $(RUNS)/train
ABLATION_OUT ?= $(RUNS)/ablation
SWEEP_EPOCHS ?=
# The ablation's rows, beta sweep and GPU schedule are recipe files: recipes/ablation/, recipes/gpu/.
RECIPES ?= recipes/ablation
# tcmalloc reuses the large gradient buffers instead of returning them to the system every step
# (glibc maps and zeroes them afresh): VGG-16 trains about 15% faster with it. Used when present.
TCMALLOC := $(firstword $(wildcard /usr/lib/x86_64-linux-gnu/libtcmalloc_minimal.so.4 /usr/lib/aarch64-linux-gnu/libtcmalloc_minimal.so.4))
TRAIN_ENV := $(if $(TCMALLOC),LD_PRELOAD=$(TCMALLOC))

.PHONY: setup test test-core test-fast demo lint train ablation gpu-pack bench bench-train package install qgis screenshot screenshot-adapt clean

setup:
	@bash scripts/setup.sh

test: setup
	$(PY) -m pytest -p no:cacheprovider

# The tests without QGIS: the engine's (tests/core) and training's (tests/training).
test-core: setup
	$(PY) -m pytest -p no:pytest_qgis tests/core tests/training

# The edit loop, well under 90 s: test-core without the tests marked slow (training, full-size
# VGG-16, scripts or worker processes end to end); `make test` stays the check.
test-fast: setup
	$(PY) -m pytest -q -p no:cacheprovider -p no:pytest_qgis -m "not slow" tests/core tests/training

demo: setup
	$(PY) scripts/demo.py

# The plugin runs in QGIS's own Python (3.9 in the macOS builds): rs_ghost_qgis/ruff.toml holds
# its syntax to 3.9, vermin the standard library it calls.
lint: setup
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .
	$(PY) -m bandit -q -r rs_ghost_qgis -c pyproject.toml
	.venv/bin/vermin -t=3.9- --no-tips --violations rs_ghost_qgis
	git ls-files rs_ghost_qgis | xargs $(PY) -m detect_secrets.pre_commit_hook --

train: setup
	$(TRAIN_ENV) $(PY) -m training run --recipe $(RECIPE) --data "$(DATA)" --out $(OUT) \
	  $(if $(STUDENT),--student $(STUDENT)) $(if $(DISTILL),--distill $(DISTILL)) $(if $(SEED),--seed $(SEED)) \
	  $(if $(EPOCHS),--epochs $(EPOCHS)) $(if $(TEACHER_EPOCHS),--teacher-epochs $(TEACHER_EPOCHS)) \
	  $(if $(LIMIT_PER_CLASS),--limit-per-class $(LIMIT_PER_CLASS)) $(if $(GSD),--gsd $(GSD)) \
	  $(if $(SOFT_LABELS),--soft-labels $(SOFT_LABELS)) $(ARGS)

# The paper's ablation: teacher, student without KD / with KD / with DKD (one schedule, seeds 0
# and 1), DKD beta sweep; every row a recipe in $(RECIPES); tables in $(ABLATION_OUT)/*.md.
# SOFT_LABELS=file distils from a teacher's logits instead of training the teacher (the recipes
# name the committed teacher's). JOBS=2 trains two rows at once, on half the cores each.
ablation: setup
	$(TRAIN_ENV) DATA="$(DATA)" RECIPES="$(RECIPES)" STUDENT=$(STUDENT) EPOCHS="$(EPOCHS)" \
	  TEACHER_EPOCHS="$(TEACHER_EPOCHS)" SWEEP_EPOCHS="$(SWEEP_EPOCHS)" SOFT_LABELS="$(SOFT_LABELS)" \
	  LIMIT_PER_CLASS="$(LIMIT_PER_CLASS)" ARGS="$(ARGS)" JOBS="$(JOBS)" OUT=$(ABLATION_OUT) bash scripts/ablation.sh

# The GPU path (docs/GPU.md): the data as parts that travel to a lent GPU machine, one per call,
# beside the working tree (64 MiB a call); there, `bash scripts/gpu_ablation.sh` runs the ablation.
PART_MIB ?= 30
gpu-pack: setup
	$(PY) -m training pack --data "$(DATA)" --out .pack --part-mib $(PART_MIB)

bench: setup
	$(PY) bench/run.py
	$(TRAIN_ENV) $(PY) bench/train.py

# Training speed alone: fp32 against the chosen precision, no KD against DKD with soft labels.
bench-train: setup
	$(TRAIN_ENV) $(PY) bench/train.py

package: setup
	$(PY) scripts/package.py

install: setup
	$(PY) scripts/install_plugin.py

qgis: setup install
	$(if $(DISPLAY),,xvfb-run -a) qgis --noversioncheck $(SHARED)/geotiff/sentinel2_demmin_germany_20230603.tif

screenshot: setup
	xvfb-run -a -s "-screen 0 1600x1000x24" $(PY) scripts/screenshot.py --rerun-stride 16

screenshot-adapt: setup
	xvfb-run -a -s "-screen 0 1800x1100x24" $(PY) scripts/screenshot_adapt.py

clean:
	rm -rf dist build .pytest_cache .ruff_cache .qgis-settings
