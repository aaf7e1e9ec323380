# Every target that runs code first builds its own environment in .venv (idempotent).
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: test test-rgw bench demo lint lambda-zip clean help dynalite

help:
	@echo "make test        create .venv and run the test suite (dynalite tests need node)"
	@echo "make test-rgw    the integration tier on a real S3 server (Ceph RGW, scripts/rgw.sh)"
	@echo "make bench       benchmarks on a local Ceph RGW -> BENCHMARKS.md (BENCH_PLAN=quick|10k|full)"
	@echo "make demo        create .venv and run the pipeline on an embedded moto server"
	@echo "                 (DEMO_ARGS=--keep leaves the server running until Ctrl-C)"
	@echo "make lint        ruff + mypy"
	@echo "make lambda-zip  dist/backup-lambda.zip (no pyarrow, no duckdb)"

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

# dynalite (an independent DynamoDB implementation, npm) for the tests that run against it:
# installed into .dynalite/ when node and npm are there; without them those tests skip.
dynalite:
	@scripts/dynalite.sh install || [ $$? -eq 3 ]

test: $(STAMP) dynalite
	$(BIN)/python -m pytest -q -n 2 $(PYTEST_ARGS)

# The pipeline against Ceph's RADOS Gateway on loopback (S3) and moto (DynamoDB): start RGW
# (installing its Debian packages if missing), run the rgw-marked tests, always stop RGW,
# and exit with pytest's status.
test-rgw: $(STAMP)
	@env_file=$$(mktemp); trap 'scripts/rgw.sh down; rm -f "$$env_file"' EXIT; \
	trap 'exit 130' INT TERM; \
	scripts/rgw.sh up > "$$env_file" || exit 1; \
	. "$$env_file"; \
	$(BIN)/python -m pytest -m rgw tests/integration -q $(PYTEST_ARGS)

# Benchmarks on a real S3 server (Ceph RGW on loopback), written to BENCHMARKS.md.
# BENCH_PLAN=quick (minutes), 10k (about 6 minutes here) or full (10k and 100k versions:
# about an hour on 2 cores: 23 min for 100k compaction, 22 min for 100k restore; the default).
BENCH_PLAN ?= full
bench: $(STAMP)
	@env_file=$$(mktemp); trap 'scripts/rgw.sh down; rm -f "$$env_file"' EXIT; \
	trap 'exit 130' INT TERM; \
	scripts/rgw.sh up > "$$env_file" || exit 1; \
	. "$$env_file"; \
	BENCH_S3_ENDPOINT=$$RGW_ENDPOINT $(BIN)/python -m bench.report \
		--plan $(BENCH_PLAN) --output BENCHMARKS.md

demo: $(STAMP)
	$(BIN)/ddb-backup demo $(DEMO_ARGS)

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

# The Lambda runtime ships boto3/botocore; the zip adds our package and powertools only.
lambda-zip: $(STAMP)
	rm -rf build/lambda dist/backup-lambda.zip
	mkdir -p build/lambda dist
	$(BIN)/python -m pip install --quiet --no-deps --target build/lambda \
		"$$($(BIN)/python -c 'import importlib.metadata as m; print("aws-lambda-powertools==" + m.version("aws-lambda-powertools"))')"
	cp -r backup_lambda build/lambda/
	find build/lambda -name '__pycache__' -prune -exec rm -rf {} +
	cd build/lambda && $(abspath $(BIN))/python -m zipfile -c ../../dist/backup-lambda.zip .
	@$(BIN)/python -c "import os; print('dist/backup-lambda.zip', os.path.getsize('dist/backup-lambda.zip'), 'bytes')"

clean:
	rm -rf $(VENV) build dist .pytest_cache .mypy_cache .ruff_cache .dynalite
