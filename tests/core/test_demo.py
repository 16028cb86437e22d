"""`make demo`'s entry point on a small corpus: real MiniLM, real WordNet/Wikipedia/quiz data."""

import json
import os
import sys

from core import demo
from tests.helpers import REPO, load_config, run_module


def test_demo_retrieves_capitals_and_scann_agrees_with_exact(tmp_path):
  config = load_config(
    os.path.join(REPO, "configs/core/search_demo.py"),
    None,
    {"passages": 1500, "max_quiz_questions": 60, "results_dir": ""},
  )
  summary = demo.run(config, str(tmp_path))
  assert summary["passages"] == 1500 and summary["quiz_capital_questions"] == 60
  assert summary["scann_recall_at_k"] >= 0.95  # brute force below 2k rows: must match exact
  assert summary["quiz_answer_in_top5"] >= 0.6  # every capital gloss is in the corpus
  saved = json.loads((tmp_path / "core_demo_search.json").read_text())
  assert saved["quiz_answer_in_top5"] == summary["quiz_answer_in_top5"]
  # A second run reuses the cached passage embeddings.
  assert any(name.startswith("passage_embeddings_") for name in os.listdir(tmp_path))


def test_demo_command_line(tmp_path):
  out = run_module(
    [
      sys.executable,
      "-m",
      "core.demo",
      f"--config={REPO}/configs/core/search_demo.py",
      f"--workdir={tmp_path}",
      "--config.passages=300",
      "--config.max_quiz_questions=10",
      "--config.results_dir=",
    ]
  )
  assert "Q: What is the capital of Kenya?" in out.stdout
  assert "recall@10 vs exact" in out.stdout
