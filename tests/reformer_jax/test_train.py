"""reformer_jax.train end to end on tiny configs: every task trains and evaluates, the Table 2 evaluation variants
run on the trained parameters, a resumed run equals an uninterrupted one, 8 devices give the 1-device losses, and
bad configs fail in one line before any work."""

import json
import os
import shutil
import subprocess
import sys

import jax
import numpy as np
import pytest

from core import config as config_lib
from tests.helpers import REPO, load_config

TINY_MODEL = {"model.n_layers": 1, "model.d_model": 16, "model.d_ff": 32, "model.n_heads": 2, "model.d_head": 8,
              "train.progress": False}  # fmt: skip


def tiny(path, arg=None, **overrides):
  return load_config(f"configs/reformer/{path}", arg, {**TINY_MODEL, **overrides})


def duplication(**overrides):
  base = {"task.seq_len": 32, "model.max_len": 32, "model.chunk_len": 8, "model.n_buckets": 4, "task.vocab_size": 8,
          "task.eval_examples": 4, "train.batch_size": 4, "train.total_steps": 4, "train.eval_every": 4,
          "train.log_every": 2, "train.checkpoint_every": 2, "eval.full": False, "eval.n_hashes": ()}  # fmt: skip
  return tiny("duplication.py", "attention=lsh,n_hashes=2", **{**base, **overrides})


def test_duplication_trains_evaluates_every_variant_and_resumes_exactly(tmp_path):
  from reformer_jax import train

  config = duplication(**{"eval.full": True, "eval.n_hashes": (1,), "optimizer.warmup_steps": 1})
  straight = train.train_and_evaluate(config, str(tmp_path / "straight"))
  final = [h for h in straight.history if h["split"] == "eval"][-1]
  assert {"accuracy", "accuracy@full", "accuracy@lsh1", "bits_per_token@full"} <= set(final)
  assert "accuracy@lsh2" not in final  # the trained variant is not repeated
  assert all(0.0 <= final[k] <= 1.0 for k in final if k.startswith("accuracy"))
  first_train = [h for h in straight.history if h["split"] == "train"][0]
  assert first_train["tokens"] == 4 * 15  # only the second copy of w is scored: L/2 - 1 targets per row

  # A run killed after its step-2 checkpoint: the same workdir without step 4. Rerun = the uninterrupted params.
  shutil.copytree(tmp_path / "straight", tmp_path / "killed")
  shutil.rmtree(tmp_path / "killed" / "checkpoints" / "4")
  resumed = train.train_and_evaluate(config, str(tmp_path / "killed"))
  assert resumed.resumed_from == 2
  for a, b in zip(jax.tree.leaves(straight.state.params), jax.tree.leaves(resumed.state.params)):
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


def test_char_lm_and_listops_train_and_report_their_metrics(tmp_path):
  from reformer_jax import train

  char = tiny("char_lm.py", None, **{"task.seq_len": 32, "model.max_len": 32, "model.chunk_len": 16,
                                     "model.n_buckets": 2, "train.batch_size": 2, "train.total_steps": 2,
                                     "train.log_every": 1, "train.eval_every": 0,
                                     "train.checkpoint_every": 2})  # fmt: skip
  result = train.train_and_evaluate(char, str(tmp_path / "char"))
  logged = [h for h in result.history if h["split"] == "train"][-1]
  assert 4 < logged["bits_per_token"] < 12 and logged["bits_per_token"] == pytest.approx(logged["loss"] / np.log(2))
  listops = tiny("listops.py", None, **{"task.seq_len": 48, "model.max_len": 48, "model.chunk_len": 16,
                                        "model.n_buckets": 4, "task.listops.min_length": 5,
                                        "task.listops.max_length": 40, "task.listops.train_examples": 16,
                                        "task.eval_examples": 5, "train.batch_size": 4, "train.total_steps": 2,
                                        "train.eval_every": 2, "train.checkpoint_every": 2})  # fmt: skip
  result = train.train_and_evaluate(listops, str(tmp_path / "listops"))
  final = [h for h in result.history if h["split"] == "eval"][-1]
  # 5 examples in two batches of 4 (3 weight-0 padding rows): accuracy is a multiple of 1/5.
  assert final["accuracy"] * 5 == pytest.approx(round(final["accuracy"] * 5))
  assert 0 < final["loss"] < 10


@pytest.mark.parametrize("arg,kinds,full_kinds", [
  ("lsh", ("lsh", "lsh"), ("full_shared_qk", "full_shared_qk")),
  ("full", ("full", "full"), ("full", "full")),
  ("full_shared_qk", ("full_shared_qk", "full_shared_qk"), ("full_shared_qk", "full_shared_qk")),
  ("local_lsh", ("local", "lsh"), ("full", "full_shared_qk")),
  ("local_full", ("local", "full"), ("full", "full")),
  ("local", ("local", "local"), ("full", "full")),
])  # fmt: skip
def test_char_lm_attention_args_give_their_layer_mix(arg, kinds, full_kinds):
  from reformer_jax import train

  config = load_config("configs/reformer/char_lm.py", f"attention={arg}")
  train.validate(config)
  cfg = train.model_config(config)
  assert cfg.kinds == kinds
  assert cfg.length_multiple == (32 if {"lsh", "local"} & set(kinds) else 1)  # LSH and local chunks: both 32
  assert train.variant(cfg, "full").kinds == full_kinds  # the "evaluated with full" column swaps every layer


EIGHT_DEVICES = """
import json, sys
from tests.helpers import load_config
from reformer_jax import train
config = load_config("configs/reformer/duplication.py", "attention=lsh,n_hashes=2", json.loads(sys.argv[2]))
result = train.train_and_evaluate(config, sys.argv[1])
print(json.dumps([h["loss"] for h in result.history if h["split"] == "train"]))
"""


def test_eight_devices_give_the_one_device_losses(tmp_path):
  from reformer_jax import train

  overrides = {**TINY_MODEL, "task.seq_len": 32, "model.max_len": 32, "model.chunk_len": 8, "model.n_buckets": 4,
               "task.vocab_size": 8, "train.batch_size": 8, "train.total_steps": 3, "train.log_every": 1,
               "train.eval_every": 0, "train.checkpoint_every": 3, "eval.full": False, "eval.n_hashes": []}  # fmt: skip
  env = {**os.environ, "PYTHONPATH": REPO, "XLA_FLAGS": "--xla_force_host_platform_device_count=8"}
  out = subprocess.run([sys.executable, "-c", EIGHT_DEVICES, str(tmp_path / "eight"), json.dumps(overrides)], cwd=REPO,
                       env=env, capture_output=True, text=True, timeout=600)  # fmt: skip
  assert out.returncode == 0, out.stderr[-3000:]
  eight = json.loads(out.stdout.strip().splitlines()[-1])
  result = train.train_and_evaluate(load_config("configs/reformer/duplication.py", "attention=lsh,n_hashes=2",
                                                overrides), str(tmp_path / "one"))  # fmt: skip
  one = [h["loss"] for h in result.history if h["split"] == "train"]
  assert len(one) == 3
  np.testing.assert_allclose(eight, one, rtol=2e-5)


@pytest.mark.parametrize(
  "overrides,message",
  [
    ({"model.n_buckets": 5}, "model: ReformerConfig.n_buckets: must be an even int >= 2"),
    ({"model.n_hashes": 0}, "model: ReformerConfig.n_hashes: must be an int >= 1, got 0"),
    ({"model.axial_pos_shape": (4, 4), "model.axial_pos_dims": (8, 8)},
     "model: ReformerConfig.axial_pos_shape: (4, 4)"),
    ({"task.seq_len": 33}, "task.seq_len: 33 exceeds the model's 32 positions"),
    ({"task.seq_len": 30, "model.max_len": 30}, None),
    ({"task.name": "copy"}, "task.name: unknown value 'copy' (allowed: duplication, char_lm, listops, imagenet64)"),
    ({"eval.n_hashes": (0,)}, "eval.n_hashes: every entry must be an int >= 1"),
  ],
)
def test_bad_configs_fail_in_one_line(overrides, message):
  from reformer_jax import train

  config = duplication(**overrides)
  if message is None:  # 30 is not a multiple of the chunk: padded inside the model, not an error
    train.validate(config)
    return
  with pytest.raises(config_lib.ConfigError) as error:
    train.validate(config)
  assert str(error.value).startswith(message) and "\n" not in str(error.value)


def test_command_line_errors_are_one_line_and_touch_nothing(tmp_path):
  workdir = tmp_path / "run"
  for args, message in (
    (["--config=configs/reformer/duplication.py:attention=sparse"],
     "error: config arg attention: unknown value 'sparse'"),
    (["--config=configs/reformer/char_lm.py:size=enwik8"], "error: task.path: file not found: ''"),
    (["--config=configs/reformer/duplication.py", "--config.model.chunk_len=0"],
     "error: model: ReformerConfig.chunk_len"),
  ):  # fmt: skip
    command = [sys.executable, "-m", "reformer_jax.train", *args, f"--workdir={workdir}"]
    env = {**os.environ, "PYTHONPATH": REPO}
    out = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 2, out.stderr[-2000:]
    assert out.stderr.strip().splitlines()[-1].startswith(message), out.stderr[-500:]
    assert len(out.stderr.strip().splitlines()) == 1
    assert not workdir.exists()
