# Entry points; each creates or reuses .venv (first run: 20 to 35 minutes
# on a fresh machine, mostly compiling mmcv's ops; seconds after; see README).
VENV ?= .venv
PY := $(VENV)/bin/python

.PHONY: setup test test-fast demo clean

setup:
	@bash tools/setup_env.sh

test: setup
	$(PY) -m pytest tests -q

# all but the end-to-end runs of the tools (tests marked slow)
test-fast: setup
	$(PY) -m pytest tests -q -m "not slow"

demo: setup
	$(PY) tools/demo.py

clean:
	rm -rf work_dirs outputs .pytest_cache
