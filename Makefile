# Two commands do all the set-up and the work on a fresh machine:
#   make demo   creates or reuses .venv, installs vagan, runs `vagan demo` (writes demo-output/)
#   make test   creates or reuses .venv, installs vagan with its test extras, prints the CPU and the
#               precision `auto` picks, runs the test suite
# The venv sees the system's packages, so a torch you already have (CUDA or CPU) is kept; where none
# is importable, the CPU wheel pinned in constraints-cpu.txt is installed (no CUDA downloads).
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.vagan-installed
# the tests run single-threaded (tests/conftest.py), so one pytest-xdist worker per core; a file's tests
# stay on one worker, so its module fixtures are built once
PARALLEL ?= -n auto --dist loadfile
PYTEST_ARGS ?= -q --durations=15
DEMO_ARGS ?=

.PHONY: install demo test machine

install: $(STAMP)

$(STAMP): pyproject.toml constraints-cpu.txt
	test -x $(BIN)/python || $(PYTHON) -m venv --system-site-packages $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	if $(BIN)/python -c "import torch" 2>/dev/null; then \
	  $(BIN)/python -m pip install --quiet -e ".[test,onnx]"; \
	else \
	  $(BIN)/python -m pip install --quiet -c constraints-cpu.txt -e ".[test,onnx]"; \
	fi
	touch $@

demo: $(STAMP)
	$(BIN)/vagan demo $(DEMO_ARGS)

machine: $(STAMP)
	@echo "cpu: $$(lscpu 2>/dev/null | sed -n 's/^Model name: *//p' | head -1)"
	@echo "cpu flags that decide the precision: $$(grep -o -w -E 'avx2|avx512f|avx512_bf16|avx512_fp16|amx_bf16|amx_fp16' /proc/cpuinfo 2>/dev/null | sort -u | tr '\n' ' ')"
	@$(BIN)/python -c "import torch; from vagan.precision import resolve_precision; print('torch', torch.__version__, '| precision auto:', resolve_precision('auto', 'cpu').describe())"

test: $(STAMP) machine
	$(BIN)/python -m pytest $(PARALLEL) $(PYTEST_ARGS)
