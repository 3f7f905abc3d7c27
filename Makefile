# Each target sets up what it needs: the virtualenv (created when missing or when
# pyproject.toml changed), and for the tests Debian's Chromium for the browser tests.
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
RUN_DIR ?= runs/demo

.PHONY: demo test test-slow lint browser clean-demo compose-init

# Every extra (ui, sam, report; dev pulls them in), at the tested torch pins of constraints.txt,
# the builds that lie on the project machines' disk (no multi-GB download).
$(STAMP): pyproject.toml constraints.txt
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip setuptools wheel
	$(PY) -m pip install -q -c constraints.txt torch==2.14.1 torchvision==0.29.1
	$(PY) -m pip install -q -c constraints.txt -e '.[dev]'
	touch $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/pipeline demo run_dir=$(RUN_DIR)

# pytest's exit code 5 (nothing collected) counts as a failure: a run that tested nothing.
test: $(STAMP) browser
	$(VENV)/bin/pytest -q; code=$$?; [ $$code -eq 5 ] && echo "no tests collected" >&2; exit $$code

test-slow: $(STAMP) browser
	$(VENV)/bin/pytest -q -m slow

lint: $(STAMP)
	$(VENV)/bin/ruff check .

# Debian's Chromium for the Playwright tests (Playwright's own browser download needs internet).
browser:
	@command -v chromium >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ]; then apt-get update -qq && apt-get install -y -qq chromium >/dev/null; \
	  else echo "browser tests need Chromium: sudo apt-get install chromium" >&2; fi; }

clean-demo:
	rm -rf $(RUN_DIR)

# docker compose: .env with a new Postgres password and Ray auth token (kept when .env has them).
compose-init:
	python3 docker/init_env.py

# The numeric tests under the most portable SIMD path and one and two threads: float sums then
# run in other orders than on this machine's default, and every tolerance must still hold
# (tests/tolerances.py). Not part of `make test`: it runs those tests three times (~3 min).
NUMERIC_TESTS := tests/unit/test_score.py tests/unit/test_score_maps.py tests/unit/test_score_parts.py \
	tests/unit/test_degrade_apply.py tests/unit/test_degrade_kernels.py tests/unit/test_degrade_noise.py \
	tests/unit/test_dspo_loss.py tests/unit/test_tiling.py tests/unit/test_trainer_levels.py \
	tests/unit/test_trainer_train.py tests/unit/test_backbones.py tests/unit/test_backbone_sizes.py \
	tests/unit/test_overlay.py
.PHONY: test-portable
test-portable: $(STAMP)
	ATEN_CPU_CAPABILITY=default OMP_NUM_THREADS=1 $(VENV)/bin/pytest -q -p no:cacheprovider $(NUMERIC_TESTS)
	ATEN_CPU_CAPABILITY=default OMP_NUM_THREADS=2 $(VENV)/bin/pytest -q -p no:cacheprovider $(NUMERIC_TESTS)
	OMP_NUM_THREADS=1 $(VENV)/bin/pytest -q -p no:cacheprovider $(NUMERIC_TESTS)
