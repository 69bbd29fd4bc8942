# The targets CI calls; a person runs exactly what CI runs.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
OUT ?= out/demo

LOCK := requirements.lock

.PHONY: setup demo report test test-slow lint typecheck format bench clean lock lock-upgrade

# Idempotent set-up: Debian packages (Mosquitto, Chromium), a virtual environment, the exact
# versions of requirements.lock (hash-checked), the project.
$(STAMP): pyproject.toml $(LOCK) scripts/setup.sh
	bash scripts/setup.sh
	touch $(STAMP)

setup: $(STAMP)

# The main job: the whole dual loop on this machine (Mosquitto, the emulated site, the twin,
# the reservoir and gate 1, the operator dashboard, shadow then live control). It prints the
# dashboard's address and the operator's password and waits for an approval there; Ctrl-C
# stops it and everything it started. DEMO_ARGS=--auto-approve runs it unattended.
demo: $(STAMP)
	$(BIN)/twinloop demo $(DEMO_ARGS)

# The offline tour: simulate the reference site for a week (KPI report + plots), record
# exploration data, fit a twin on mild days and report its accuracy on held-out summer days.
report: $(STAMP)
	$(BIN)/twinloop simulate --scenario tropical-typical-week --out $(OUT)
	$(BIN)/twinloop twin record --scenario twin-train-mild --out $(OUT)/twin-data/train --overwrite --quiet
	$(BIN)/twinloop twin record --scenario twin-test-summer --seed 1 --out $(OUT)/twin-data/summer --overwrite --quiet
	$(BIN)/twinloop twin fit --data $(OUT)/twin-data/train --out $(OUT)/twin --members 1 --iterations 200 --overwrite
	$(BIN)/twinloop twin report --twin $(OUT)/twin --data $(OUT)/twin-data/summer --out $(OUT)/twin-report

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: $(STAMP)
	$(BIN)/mypy

# The test command of the README: lint, types, then the default (non-slow) test suite.
# pytest exits 5 when it collects nothing; that is not a failure of the suite.
test: lint typecheck
	$(BIN)/pytest -m "not slow" -q; rc=$$?; if [ $$rc -eq 5 ]; then rc=0; fi; exit $$rc

test-slow: $(STAMP)
	$(BIN)/pytest -m slow -q; rc=$$?; if [ $$rc -eq 5 ]; then rc=0; fi; exit $$rc

format: $(STAMP)
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

bench: $(STAMP)
	$(BIN)/python benchmarks/plant_figures.py
	$(BIN)/python benchmarks/annual_pue.py
	taskset -c 0 $(BIN)/python benchmarks/plant_speed.py --days 7 --batches 1 --engines numba
	$(BIN)/python benchmarks/twin_figures.py
	$(BIN)/python benchmarks/twin_speed.py --twin out/bench/twin/twin
	$(BIN)/python benchmarks/twin_extrapolation.py --members 1 --iterations 300
	$(BIN)/python benchmarks/heldout_suite.py --policy fixed-setpoints --policy trim-and-respond --policy mpc --policy oracle-mpc
	$(BIN)/python benchmarks/gate_figures.py --twin out/bench/twin/twin
	$(BIN)/python benchmarks/ray_suite_speed.py --rounds 2
	$(BIN)/python benchmarks/control_latency.py --periods 300
	$(BIN)/python benchmarks/ingestion_speed.py --client c --messages 100000

# requirements.lock: every package of the project and its dev tools, pinned with hashes, for
# Linux x86_64 and Python 3.11 (what CI runs). `make lock` adds what pyproject.toml gained and
# keeps the other pins; `make lock-upgrade` moves every pin to the newest release allowed.
# Then `make setup` (or `make test`) installs the new set and the tests run on it.
PIP_COMPILE = CUSTOM_COMPILE_COMMAND="make lock" $(VENV)/bin/pip-compile --quiet \
	--generate-hashes --allow-unsafe --extra dev --strip-extras \
	--no-emit-index-url --no-emit-find-links --output-file $(LOCK) pyproject.toml

$(VENV)/bin/pip-compile:
	[ -x $(BIN)/python ] || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet pip-tools

lock: $(VENV)/bin/pip-compile
	$(PIP_COMPILE)

lock-upgrade: $(VENV)/bin/pip-compile
	$(PIP_COMPILE) --upgrade

clean:
	rm -rf $(VENV) out build dist *.egg-info
