"""benchmarks/electra/compute_matched.py end to end on a toy budget: runs, FLOPs matching, caching, the JSON."""

import json
import os
import subprocess
import sys

import pytest

from tests.helpers import REPO


def _env(tmp_path):
  """The runs of one call compile the same programs (finetuning: one per shape): a JAX compilation cache, fresh per
  test, unless the session set one."""
  env = dict(os.environ)
  env.setdefault("JAX_COMPILATION_CACHE_DIR", str(tmp_path / "jax_cache"))
  env.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0")
  return env


@pytest.mark.slow
def test_compute_matched_runs_end_to_end_and_resumes_from_its_cache(tmp_path):
  # One-layer ELECTRA / MLM encoders (--pretrain_set): the property is the pipeline, not the model size.
  # One seed: a second repeats the same path with another key (test_runner covers the multi-seed statistics).
  args = [sys.executable, "-m", "benchmarks.electra.compute_matched", "--seeds", "1", "--electra_steps", "4",
          "--tasks", "word_order", "--fractions", "0.5,1.0", "--train_size", "32", "--finetune_epochs", "1",
          "--pretrain_set", "model.num_layers=1", f"--workdir={tmp_path / 'work'}",
          f"--results_dir={tmp_path / 'results'}"]  # fmt: skip
  first = subprocess.run(args, cwd=REPO, env=_env(tmp_path), capture_output=True, text=True, check=False)
  assert first.returncode == 0, first.stderr[-2000:]
  result = json.loads((tmp_path / "results" / "electra_compute_matched.json").read_text())
  assert (tmp_path / "results" / "electra_compute_matched.png").stat().st_size > 0
  # Finetuning read each checkpoint through the encoder that pretraining exported beside it (electra_jax.export).
  assert sorted(os.listdir(tmp_path / "work" / "electra" / "s1" / "export")) == ["step_2", "step_4"]
  # ELECTRA and the MLM twin spend the same pretraining FLOPs (within one MLM step), at both fractions.
  rows = result["rows"]
  final = {(r["objective"], r["seed"]): r for r in rows if r["step"] in (4, result["mlm_steps"])}
  electra, mlm = final[("electra", 1)]["flops"], final[("mlm", 1)]["flops"]
  assert abs(electra - mlm) <= mlm / result["mlm_steps"]
  assert electra == pytest.approx(result["pretrain_flops"])
  assert sorted({(r["objective"], r["step"]) for r in rows}) == sorted(
    [("random_init", 0), ("electra", 2), ("electra", 4)]
    + [("mlm", max(1, round(result["mlm_steps"] * f))) for f in (0.5, 1.0)]
  )
  assert all(-100 <= r["scores"]["word_order"] <= 100 for r in rows)  # Matthews correlation x 100
  summary = result["summary"]
  assert set(summary) == {"random_init", "electra", "mlm"}
  assert result["electra_minus_mlm"] == pytest.approx(summary["electra"]["mean"] - summary["mlm"]["mean"])
  # A second call finds every pretraining run and finetuning result in the workdir: same numbers, no training.
  second = subprocess.run(args, cwd=REPO, env=_env(tmp_path), capture_output=True, text=True, check=False)
  assert second.returncode == 0, second.stderr[-2000:]
  again = json.loads((tmp_path / "results" / "electra_compute_matched.json").read_text())
  assert again["rows"] == rows


@pytest.mark.slow
def test_compute_matched_paper_size_path_runs_on_glue_tsvs(tmp_path):
  """The accelerator recipe's code path (--size small, --glue_dir) at a toy batch: ELECTRA-Small's widths (one of its
  12 layers: the property is the path, not the depth) are pretrained and the GLUE TSVs under glue_dir/RTE are what
  finetuning reads."""
  from core.finetune import glue

  pairs = [("A man sleeps.", "A man is awake.", "not_entailment"), ("A cat eats.", "A cat eats food.", "entailment")]
  for name in ("train.tsv", "dev.tsv"):
    rows = [(i, s1, s2, label) for i, (s1, s2, label) in enumerate(pairs * 4)]
    glue.write_glue_tsv(tmp_path / "glue" / "RTE" / name, ("index", "sentence1", "sentence2", "label"), rows)
  args = [sys.executable, "-m", "benchmarks.electra.compute_matched", "--size", "small", "--seeds", "0",
          "--electra_steps", "2", "--batch_size", "2", "--tasks", "rte", "--fractions", "1.0", "--train_size", "0",
          "--finetune_epochs", "1", f"--glue_dir={tmp_path / 'glue'}", f"--workdir={tmp_path / 'work'}",
          "--pretrain_set", "optimizer.b2=0.98", "--pretrain_set", "optimizer.bias_correction=true",
          "--pretrain_set", "model.num_layers=1",
          f"--results_dir={tmp_path / 'results'}"]  # fmt: skip
  run = subprocess.run(args, cwd=REPO, env=_env(tmp_path), capture_output=True, text=True, check=False)
  assert run.returncode == 0, run.stderr[-2000:]
  result = json.loads((tmp_path / "results" / "electra_compute_matched.json").read_text())
  assert (result["size"], result["batch_size"], result["corpus"]) == ("small", 2, "bundled")
  config = json.loads((tmp_path / "work" / "electra" / "s0" / "config.json").read_text())
  model = config["model"]
  assert (model["hidden_size"], model["embedding_size"], model["num_layers"], config["train"]["batch_size"]) == (
    256, 128, 1, 2
  )
  for objective in ("electra", "mlm"):  # --pretrain_set reaches both objectives
    optimizer = json.loads((tmp_path / "work" / objective / "s0" / "config.json").read_text())["optimizer"]
    assert (optimizer["b2"], optimizer["bias_correction"]) == (0.98, True)
  assert result["pretrain_overrides"] == {"optimizer.b2": 0.98, "optimizer.bias_correction": True, "model.num_layers": 1}
  assert {r["objective"] for r in result["rows"]} == {"random_init", "electra", "mlm"}
  # Finetuning read the 8-example dev TSV: accuracies are multiples of 100 / 8.
  assert all(
    (r["scores"]["rte"] * 8 / 100) == pytest.approx(round(r["scores"]["rte"] * 8 / 100)) for r in result["rows"]
  )


def test_compute_matched_rejects_bad_tasks_corpus_and_overrides_before_any_work(tmp_path):
  args = [sys.executable, "-m", "benchmarks.electra.compute_matched", "--tasks", "wordnet_pos,sst3",
          f"--workdir={tmp_path / 'work'}"]  # fmt: skip
  run = subprocess.run(args, cwd=REPO, capture_output=True, text=True, check=False)
  assert run.returncode == 2
  assert "--tasks: config arg task: unknown value 'sst3' (allowed: cola, sst2" in run.stderr.splitlines()[-1]
  assert not (tmp_path / "work").exists()
  run = subprocess.run(args[:3] + ["--corpus", "tfds:c4", f"--workdir={tmp_path / 'work'}"], cwd=REPO,
                       capture_output=True, text=True, check=False)  # fmt: skip
  assert run.returncode == 2
  assert "data.corpus: unknown value 'tfds:c4' (allowed: bundled," in run.stderr.splitlines()[-1]
  assert not (tmp_path / "work").exists()
  for bad, message in (("optimizer.beta2=0.98", 'Key "beta2" does not exist'), ("optimizer.b2", "expected KEY=VALUE")):
    run = subprocess.run(args[:3] + ["--pretrain_set", bad, f"--workdir={tmp_path / 'work'}"], cwd=REPO,
                         capture_output=True, text=True, check=False)  # fmt: skip
    assert run.returncode == 2
    assert "--pretrain_set: " in run.stderr.splitlines()[-1] and message in run.stderr.splitlines()[-1]
    assert not (tmp_path / "work").exists()
