"""benchmarks/lora's result plumbing on synthetic files: `paper_results` run names, `--include` joins and its
one-line errors, `curves.read_run`'s fields, `profile_step`'s trace reading and per-kind sums, and what the timed
benchmarks compare: the serving loop's rows and the LoRA step's trainable set (the README's numbers come from
these, so they are tested)."""

import gzip
import json

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import lora_jax
from benchmarks.core import common
from benchmarks.lora import common as lora_common
from benchmarks.lora import curves, paper_results, profile_step, serving


def test_runs_name_rows_by_their_head():
  mlp = dict(paper_results.runs([4, 8]))
  assert mlp == {"full": "method=full", "lora_qv_r8": "method=lora,rank=8", "head": "method=head",
                 "lora_all_r8": "method=lora,targets=all_linear,rank=8",
                 "lora_qv_r4": "method=lora,rank=4"}  # fmt: skip
  linear = dict(paper_results.runs([4, 8], "linear"))
  assert linear == {f"{name}_linear": f"{arg},classifier=linear" for name, arg in mlp.items()}


def test_include_joins_rows_of_the_same_task_and_refuses_others(tmp_path, monkeypatch):
  monkeypatch.setattr(common, "RESULTS_DIR", tmp_path)
  rows = [{"run": "full", "median": 73.5}, {"run": "lora_qv_r16", "median": 72.7, "epochs": 10.0}]
  (tmp_path / "earlier.json").write_text(json.dumps({"settings": {"task": "word_order", "epochs": 3.0}, "rows": rows}))
  joined = paper_results._rows_of("earlier", "word_order")
  assert [(r["run"], r["epochs"]) for r in joined] == [("full", 3.0), ("lora_qv_r16", 10.0)]  # per-row epochs win
  with pytest.raises(SystemExit, match=r"^--include: .*earlier.json holds no paper_results rows for task 'negation'$"):
    paper_results._rows_of("earlier", "negation")
  with pytest.raises(SystemExit, match=r"^--include: .*missing.json does not exist \(allowed: "):
    paper_results._rows_of("missing", "word_order")


def _seed_dir(tmp_path, evals, total=100):
  config = {"train": {"total_steps": total}, "finetune": {"epochs": 10.0}, "seed": 0, "optimizer": {"peak_lr": 1e-3},
            "lora": {"method": "lora", "rank": 16, "dropout": 0.1}}  # fmt: skip
  records = [{"step": 50, "split": "train", "loss": 0.4, "accuracy": 0.8},
             {"step": 100, "split": "train", "loss": 0.2, "accuracy": 0.95}]  # core.train's metrics.jsonl rows
  records += [{"split": "eval", "step": step, "score": score, "accuracy": score / 100} for step, score in evals]
  (tmp_path / "config.json").write_text(json.dumps(config))
  (tmp_path / "metrics.jsonl").write_text("\n".join(json.dumps(r) for r in records))
  return tmp_path


def test_curves_read_a_seed_dir(tmp_path):
  run = curves.read_run("lora", _seed_dir(tmp_path, [(50, 70.0), (100, 72.0)]))
  assert (run["method"], run["rank"], run["lr"], run["lora_dropout"]) == ("lora", 16, 1e-3, 0.1)
  assert run["finished"] and run["final"] == 72.0 and run["best"] == 72.0
  assert run["train_accuracy"] == 0.95 and run["dev_accuracy"] == 0.72  # the last train window and the last eval
  assert [p["epoch"] for p in run["curve"]] == [5.0, 10.0]
  stopped = curves.read_run("lora", _seed_dir(tmp_path, [(50, 70.0)]))
  assert not stopped["finished"] and stopped["final"] is None and stopped["best"] == 70.0


def test_curves_refuse_a_dir_without_evals(tmp_path):
  with pytest.raises(SystemExit, match=r"^lora: .* holds no metrics.jsonl \+ config.json"):
    curves.read_run("lora", tmp_path)
  with pytest.raises(SystemExit, match=r"^lora: .* has no eval rows \(train with --config.train.eval_every=N\)$"):
    curves.read_run("lora", _seed_dir(tmp_path, []))


def test_profile_step_reads_per_call_op_times_without_host_frames(tmp_path):
  events = [{"ph": "X", "name": "copy_bitcast_fusion", "dur": 3000}, {"ph": "X", "name": "ynn_fusion.1", "dur": 600},
            {"ph": "X", "name": "copy_bitcast_fusion", "dur": 3000}, {"ph": "i", "name": "ynn_fusion.1", "dur": 9e9},
            {"ph": "X", "name": "ThunkExecutor::Execute", "dur": 9000}, {"ph": "X", "name": "$api.py:1 f", "dur": 1}]
  (tmp_path / "plugins" / "profile").mkdir(parents=True)
  (tmp_path / "plugins" / "profile" / "host.trace.json.gz").write_bytes(
    gzip.compress(json.dumps({"traceEvents": events}).encode()))
  ops = profile_step.op_times_ms(str(tmp_path), calls=3)
  assert ops == pytest.approx({"copy_bitcast_fusion": 2.0, "ynn_fusion.1": 0.2})  # µs → ms, per call
  assert list(ops) == ["copy_bitcast_fusion", "ynn_fusion.1"]  # slowest first


def test_profile_step_sums_op_times_by_kind():
  ops = {"ynn_fusion.45": 5.0, "copy_bitcast_fusion": 1.0, "ynn_fusion.3": 2.0, "dot.general.7": 0.5, "fusion.x": 4.0}
  kinds = profile_step.op_kinds_ms(ops)
  assert kinds == pytest.approx({"ynn_fusion": 7.0, "fusion.x": 4.0, "copy_bitcast_fusion": 1.0, "dot.general": 0.5})
  assert list(kinds) == ["ynn_fusion", "fusion.x", "copy_bitcast_fusion", "dot.general"]  # slowest first


def test_serving_loop_serves_the_rows_of_the_mixed_batch():
  """The loop the mixed batch is timed against does the same work: adapter k's rows, under adapter k."""
  model, params = lora_common.minilm_shape_classifier(num_layers=1)
  registry, _, _ = lora_common.adapter_registry(model, params, n_adapters=3, rank=2)
  batch = lora_common.random_batch(np.random.default_rng(0), rows=6, length=8)
  names, order, sub = serving.split_by_adapter(batch, 3)
  assert names == ["task0", "task1", "task2"] * 2 and list(order) == [0, 3, 1, 4, 2, 5]
  loop = np.concatenate([np.asarray(registry(f"task{k}", *sub[k])) for k in range(3)])
  np.testing.assert_allclose(np.asarray(registry.mixed(names, *batch))[order], loop, atol=1e-5)
  assert not np.allclose(loop[:2], np.asarray(registry("task1", *sub[0])), atol=1e-5)  # the adapters differ
  with pytest.raises(ValueError, match=r"^split_by_adapter: batch rows 6 must be a multiple of the adapter count 4$"):
    serving.split_by_adapter(batch, 4)


def test_compiled_steps_train_adapters_and_head_only():
  model, params = lora_common.minilm_shape_classifier(num_layers=1)
  spec = lora_jax.LoraSpec(lora_common.TARGETS, rank=2, alpha=4.0)
  batch = lora_common.random_batch(np.random.default_rng(0), rows=2, length=8)
  steps = lora_common.compiled_steps(model, params, {"full": None, "lora": spec}, batch, jnp.array([0, 1]),
                                     optax.sgd(0.1))  # fmt: skip
  full_params, _ = steps["full"][0](*steps["full"][1])
  trainable, state, frozen = steps["lora"][1]
  new_trainable, _ = steps["lora"][0](trainable, state, frozen)
  assert set(new_trainable) == {"lora", "head"} and set(frozen) == {"encoder"}
  assert not np.allclose(full_params["encoder"]["layer_0"]["attention"]["query"]["kernel"],
                         params["encoder"]["layer_0"]["attention"]["query"]["kernel"])  # fmt: skip
  moved = jax.tree.map(lambda a, b: not np.allclose(a, b), new_trainable["lora"], trainable["lora"])
  assert all(jax.tree.leaves(moved))  # every lora_a and lora_b gets a gradient (B starts non-zero here)
