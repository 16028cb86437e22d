"""benchmarks/electra/compute_matched.py end to end on a toy budget: runs, FLOPs matching, caching, the JSON."""

import json
import subprocess
import sys

import pytest

from tests.helpers import REPO


@pytest.mark.slow
def test_compute_matched_runs_end_to_end_and_resumes_from_its_cache(tmp_path):
  args = [sys.executable, "-m", "benchmarks.electra.compute_matched", "--seeds", "0,1", "--electra_steps", "4",
          "--tasks", "word_order", "--fractions", "0.5,1.0", "--train_size", "32", "--finetune_epochs", "1",
          f"--workdir={tmp_path / 'work'}", f"--results_dir={tmp_path / 'results'}"]  # fmt: skip
  first = subprocess.run(args, cwd=REPO, capture_output=True, text=True, check=False)
  assert first.returncode == 0, first.stderr[-2000:]
  result = json.loads((tmp_path / "results" / "electra_compute_matched.json").read_text())
  assert (tmp_path / "results" / "electra_compute_matched.png").stat().st_size > 0
  # ELECTRA and the MLM twin spend the same pretraining FLOPs (within one MLM step), at both fractions.
  rows = result["rows"]
  final = {(r["objective"], r["seed"]): r for r in rows if r["step"] in (4, result["mlm_steps"])}
  for seed in (0, 1):
    electra, mlm = final[("electra", seed)]["flops"], final[("mlm", seed)]["flops"]
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
  second = subprocess.run(args, cwd=REPO, capture_output=True, text=True, check=False)
  assert second.returncode == 0, second.stderr[-2000:]
  again = json.loads((tmp_path / "results" / "electra_compute_matched.json").read_text())
  assert again["rows"] == rows
