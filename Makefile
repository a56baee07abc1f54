# bone-age: the recipe's flow (setup, jupyter, training) plus test and build targets.
# Every target runs under scripts/env.sh, the one definition of the libtorch
# environment. `make help` lists the targets.
SHELL := bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help

ENV      := scripts/env.sh
CARGO    := $(ENV) cargo
BIN      := target/release/bone-age
CONFIG   ?= configs/recipe.toml
DATA_DIR ?= data
RUN_DIR  ?= runs/recipe-$(shell date +%Y%m%d-%H%M%S)
DEMO     := results/demo
NOTEBOOKS := $(sort $(wildcard notebooks/*.ipynb))

# make jupyter: where the server listens. JUPYTER_TOKEN empty = a fresh random token.
JUPYTER_IP    ?= 127.0.0.1
JUPYTER_PORT  ?= 8888
JUPYTER_TOKEN ?=
JUPYTER_PID   := results/jupyter.pid
JUPYTER_LOG   := results/jupyter.log

.PHONY: help setup build doctor demo training test cargo-test notebook-test notebook-check \
        notebook-strip jupyter kill-jupyter fmt lint clean

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-15s %s\n", $$1, $$2}'

setup: ## install the venv (torch), evcxr_jupyter and the Rust kernel (cached, idempotent)
	scripts/setup.sh

build: ## build the release binary target/release/bone-age
	$(CARGO) build --release --locked

doctor: build ## check the installation: torch, CUDA, threads, paths
	$(BIN) doctor

# make demo should reach a test MAE of about 14 months (the mean predictor: 33.4) in 3–4
# minutes on 2 CPU cores (configs/demo.toml has the details). Evaluate and predict load
# the run's default checkpoint: its weight average (docs/results.md says why).
demo: build ## the main job on built-in data: phantom set, train, evaluate, predict → results/demo (test MAE ~14 months, 3–4 min on 2 cores)
	@[ -f data/phantom/train.csv ] || $(BIN) data phantom --out data/phantom
	$(BIN) data summary --data-dir data/phantom
	rm -rf $(DEMO)
	$(BIN) --config configs/demo.toml train --data-dir data/phantom --out $(DEMO)/run
	$(BIN) --config configs/demo.toml evaluate --checkpoint $(DEMO)/run \
	  --data-dir data/phantom --split test --out $(DEMO)
	$(BIN) predict data/phantom/test/401.png data/phantom/test/402.png --checkpoint $(DEMO)/run
	@echo "results: $(DEMO)/metrics.json, $(DEMO)/predictions.csv, $(DEMO)/run/metrics.csv"

# make training runs the full recipe (500×375, 50 epochs): a GPU job. On 2 CPU cores it trains at
# 2.0 img/s (about 1.6 h per epoch); the same optimiser at 128×128 reaches 23.5 months validation
# MAE after 2 epochs of 191 s (configs/recipe.toml has the measurements).
training: build ## train CONFIG (default: the paper's recipe, configs/recipe.toml) headless on DATA_DIR (default data/) into RUN_DIR (runs/recipe-<time>); a GPU job
	$(BIN) --config $(CONFIG) train --data-dir $(DATA_DIR) --out $(RUN_DIR)

test: cargo-test notebook-test ## the whole test suite (what CI runs)

cargo-test: ## Rust unit and integration tests (release profile, shared with the CLI build)
	$(CARGO) test --release --locked

notebook-check: ## committed notebooks must carry no outputs
	$(ENV) python scripts/notebooks.py check $(NOTEBOOKS)

notebook-strip: ## remove outputs from the committed notebooks
	$(ENV) python scripts/notebooks.py strip $(NOTEBOOKS)

notebook-test: notebook-check ## execute every notebook headless on the Rust kernel into results/notebooks/
	$(ENV) python scripts/notebooks.py selftest
	$(ENV) python scripts/notebooks.py run --out results/notebooks $(NOTEBOOKS)

jupyter: ## start Jupyter with the Rust kernel in the background and print its URL
	@mkdir -p results
	@if [ -f $(JUPYTER_PID) ] && kill -0 "$$(cat $(JUPYTER_PID))" 2>/dev/null; then \
	  echo "Jupyter already running (pid $$(cat $(JUPYTER_PID))); 'make kill-jupyter' stops it"; \
	  $(ENV) jupyter server list; exit 0; fi; \
	token="$(JUPYTER_TOKEN)"; [ -n "$$token" ] || token="$$(python3 -c 'import secrets; print(secrets.token_hex(24))')"; \
	$(ENV) nohup jupyter notebook --no-browser --ip=$(JUPYTER_IP) --port=$(JUPYTER_PORT) \
	  --port-retries=0 --IdentityProvider.token="$$token" --ServerApp.root_dir="$(CURDIR)" \
	  $$([ "$$(id -u)" = 0 ] && echo --allow-root) \
	  > $(JUPYTER_LOG) 2>&1 & echo $$! > $(JUPYTER_PID); \
	for i in $$(seq 60); do \
	  grep -q "http://" $(JUPYTER_LOG) && break; \
	  kill -0 "$$(cat $(JUPYTER_PID))" 2>/dev/null || { cat $(JUPYTER_LOG); rm -f $(JUPYTER_PID); exit 1; }; \
	  sleep 1; done; \
	echo "Jupyter (pid $$(cat $(JUPYTER_PID)), log $(JUPYTER_LOG)):"; \
	echo "  http://$(JUPYTER_IP):$(JUPYTER_PORT)/tree/notebooks?token=$$token"; \
	echo "Stop it with 'make kill-jupyter'."

kill-jupyter: ## stop the Jupyter server that 'make jupyter' started
	@if [ -f $(JUPYTER_PID) ] && kill "$$(cat $(JUPYTER_PID))" 2>/dev/null; then \
	  echo "stopped Jupyter (pid $$(cat $(JUPYTER_PID)))"; else echo "no Jupyter started by make is running"; fi
	@rm -f $(JUPYTER_PID)

fmt: ## format the Rust code
	cargo fmt --all

lint: ## rustfmt check, clippy with warnings as errors, and no cycles among the library's modules
	cargo fmt --all -- --check
	$(CARGO) clippy --release --all-targets --locked -- -D warnings
	$(ENV) python scripts/module_graph.py > /dev/null || $(ENV) python scripts/module_graph.py

clean: ## remove build outputs and results (the cache outside the clone stays)
	cargo clean
	rm -rf results
