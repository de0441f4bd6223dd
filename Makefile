# Set-up and checks. `make demo` and `make test` create the virtual environment when missing.
# VENV can point elsewhere (CI keeps one per requirements hash in a cache folder).
VENV ?= .venv
PYTHON ?= python3
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
DEMO_DIR ?= demo

.PHONY: install demo test lint clean

install: $(STAMP)

# Re-runs pip only when a requirements file changed (pip then installs just the difference).
$(STAMP): requirements.txt requirements-dev.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -r requirements.txt -r requirements-dev.txt
	touch $(STAMP)

# A few minutes on a CPU (README, "Set up", gives the measured time); few sample grids, as each
# costs a second or more on a CPU. DEMO_FLAGS adds training options, e.g. --precision fp32.
DEMO_STEPS ?= 200
DEMO_FLAGS ?=

demo: $(STAMP)
	@echo "== demo: working in $(DEMO_DIR)/ (a re-run starts it over)"
	rm -rf $(DEMO_DIR)/augmented $(DEMO_DIR)/fakes $(DEMO_DIR)/overview $(DEMO_DIR)/embedding*
	$(PY) isic_dataset.py transform training_data $(DEMO_DIR)/data-64 64 64
	$(PY) isic_dataset.py augment $(DEMO_DIR)/data-64 200 --output $(DEMO_DIR)/augmented --seed 1
	$(PY) gancontrol.py training $(DEMO_DIR)/data-64 $(DEMO_STEPS) 32 $(DEMO_DIR)/run --overwrite \
		--sample-every 50 $(DEMO_FLAGS)
	$(PY) gancontrol.py generate $(DEMO_DIR)/run 16 $(DEMO_DIR)/fakes
	$(PY) gancontrol.py generate $(DEMO_DIR)/run 16 $(DEMO_DIR)/overview --overview
	$(PY) img2dist.py embedding $(DEMO_DIR)/embedding.png training_data $(DEMO_DIR)/fakes \
		--group --group-labels --real training_data
	@echo "== demo done, in $(DEMO_DIR):"
	@echo "   data-64/        the 54 training images, center-cropped to 64x64"
	@echo "   augmented/      200 augmented copies"
	@echo "   run/            the training run ($(DEMO_STEPS) steps): samples/, loss_curve.png, stats.jsonl, checkpoint.pt"
	@echo "   fakes/          16 generated images; overview/ the same 16 as one grid"
	@echo "   embedding.png   real vs generated on one MDS map (.csv, .npy, .json of statistics beside it)"

lint: $(STAMP)
	$(PY) -m ruff check .

test: $(STAMP) lint
	$(PY) -m pytest -q tests

clean:
	rm -rf .pytest_cache .ruff_cache demo
