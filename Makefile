# platformc — the two commands a new user needs: `make generate` and `make test`.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: setup generate check test tools docs schema golden lint bench fuzz clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --disable-pip-version-check -e '.[test]'
	touch $(STAMP)

setup: $(STAMP)  ## create .venv and install platformc with its test extras

generate: setup  ## compile platform.yaml into generated/ and docs/, refresh the schema
	$(BIN)/platformc schema
	$(BIN)/platformc generate

check: setup  ## the PR check: spec valid, schema and generated/ up to date, every connection proved (writes nothing)
	$(BIN)/platformc schema --check
	$(BIN)/platformc generate --check
	$(BIN)/platformc verify generated

test: setup  ## run the test suite (tools missing locally skip; under CI=true they fail)
	$(BIN)/python -m pytest -q

fuzz: setup  ## the spec fuzz at length: 24,000 random mutants, every output parsed in its format (~21 min: 24,000 took 21.5 min, 1,010 s CPU, on 2 busy cores, nothing found); the suite runs 120 fixed ones in ~15-40 s
	FUZZ_EXAMPLES=$${FUZZ_EXAMPLES:-24000} FUZZ_RANDOM=1 $(BIN)/python -m pytest -q -p no:cacheprovider tests/test_fuzz.py -k fuzz_every_spec

tools:  ## install the external validators the tests use (Debian packages need root)
	bash scripts/install-tools.sh

docs: setup
	$(BIN)/platformc docs

schema: setup
	$(BIN)/platformc schema

golden: setup  ## refresh tests/golden/ from tests/cases/ (review `git diff tests/golden` after)
	$(BIN)/python -m tests.golden_harness --update

lint: setup
	$(BIN)/python -m compileall -q compiler tests
	$(BIN)/platformc validate --strict

bench: setup  ## time validate and generate (medians); figures go in the issue notes
	$(BIN)/python scripts/bench.py

clean:
	rm -rf $(VENV) .pytest_cache build *.egg-info
