"""`make demo`'s entry point on a small corpus: real MiniLM, real WordNet/Wikipedia/quiz data.

One command-line run (what `make demo` starts) checks the printed hits, the saved summary and the embedding cache:
MiniLM's forward pass over the passages is most of the cost, so the corpus is every capital gloss plus a few
distractors and Wikipedia passages.
"""

import json
import os
import re
import sys

from tests.helpers import REPO, run_module


def test_demo_command_line_retrieves_capitals_and_scann_agrees_with_exact(tmp_path):
  out = run_module(
    [
      sys.executable,
      "-m",
      "core.demo",
      f"--config={REPO}/configs/core/search_demo.py",
      f"--workdir={tmp_path}",
      "--config.passages=600",  # 60 Wikipedia passages, every noun gloss that mentions 'capital', distractors
      "--config.wikipedia_share=0.1",
      "--config.max_quiz_questions=60",
      "--config.results_dir=",
    ]
  ).stdout
  assert "Q: What is the capital of Kenya?" in out
  assert "recall@10 vs exact" in out
  summary = json.loads((tmp_path / "core_demo_search.json").read_text())
  assert summary["passages"] == 600 and summary["quiz_capital_questions"] == 60
  assert summary["scann_recall_at_k"] >= 0.95  # brute force below 2k rows: must match exact
  assert summary["quiz_answer_in_top5"] >= 0.6  # every capital gloss is in the corpus
  hits, asked = map(int, re.search(r"quiz capital answer in top-5: (\d+)/(\d+)", out).groups())
  assert summary["quiz_answer_in_top5"] == hits / asked  # the saved summary is what was printed
  # A second run reuses the cached passage embeddings.
  assert any(name.startswith("passage_embeddings_") for name in os.listdir(tmp_path))
