# The targets CI calls; a person runs exactly what CI runs.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
OUT ?= out/demo

.PHONY: setup demo report test test-slow lint typecheck format bench clean

# Idempotent set-up: Debian packages (Mosquitto, Chromium), a virtual environment, the project.
$(STAMP): pyproject.toml scripts/setup.sh
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

clean:
	rm -rf $(VENV) out build dist *.egg-info
