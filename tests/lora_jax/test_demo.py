"""`make demo`'s LoRA part end to end on a tiny random-init encoder: two adapters trained through the entry point,
exported, loaded onto one base and served in one mixed batch equal to one-adapter-at-a-time runs."""

import re
import sys

from tests.helpers import run_module


def test_demo_trains_two_adapters_and_serves_them_mixed(tmp_path):
  out = run_module([sys.executable, "-m", "lora_jax.demo", f"--workdir={tmp_path}", "--tiny", "--train_size=64",
                    "--epochs=1", "--rows=8"]).stdout  # fmt: skip
  assert re.search(r"negation +dev accuracy [\d.]+; adapter \+ head", out)
  assert re.search(r"word_order +dev mcc -?[\d.]+; adapter \+ head", out)
  assert "One mixed batch of 8 dev rows" in out
  diff = float(re.search(r"one adapter at a time\| over encoder outputs: ([\d.e+-]+)", out).group(1))
  assert diff < 1e-4
  assert (tmp_path / "negation" / "seed_0" / "adapter").is_dir()
