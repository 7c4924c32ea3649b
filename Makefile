# Two entry points; each creates or reuses .venv (first run ~10 min: mmcv's
# ops are compiled from source, see README).
VENV ?= .venv
PY := $(VENV)/bin/python

.PHONY: setup test demo clean

setup:
	@bash tools/setup_env.sh

test: setup
	$(PY) -m pytest tests -q

demo: setup
	$(PY) tools/demo.py

clean:
	rm -rf work_dirs outputs .pytest_cache
