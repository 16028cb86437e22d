"""End-to-end runs of the reference job (`core.pretrain_mlm`): learning, sharding equivalence, preemption."""

import json
import os
import re
import signal
import subprocess
import sys
import time

import numpy as np
import orbax.checkpoint as ocp
import pytest

from configs.core import common
from core import metrics as metrics_lib
from core import pretrain_mlm, pretraining
from tests.helpers import REPO, load_config, run_module

CONFIG = os.path.join(REPO, "configs/core/bert_mlm.py")


def test_tiny_mlm_learns_on_wikipedia(tmp_path):
  config = load_config(
    CONFIG,
    "tiny",
    {
      "train.total_steps": 60,
      "train.eval_every": 60,
      "train.log_every": 10,
      "train.progress": False,
      "data.max_documents": 60,
      "model.hidden_dropout_rate": 0.0,  # a smaller program to compile; learning needs no dropout
      "model.attention_dropout_rate": 0.0,
      "data.seq_len": 32,  # 8 rows of 32: the loss still falls by ~1.5 in 60 steps (frequent tokens)
      "train.batch_size": 8,
    },
  )
  result = pretrain_mlm.train_and_evaluate(config, str(tmp_path))
  train = metrics_lib.read_jsonl(str(tmp_path), "train")
  assert train[0]["loss"] > 9.5  # ~ln(30522) = 10.33 at init
  assert train[-1]["loss"] < train[0]["loss"] - 1.0  # frequent tokens are learnt within 60 steps
  evals = [h for h in result.history if h["split"] == "eval"]
  assert evals and 0.0 < evals[-1]["mlm_accuracy"] < 1.0


def run_for_losses(arg, workdir):
  """3 logged steps of the tiny job: the device count, the FFN kernel's sharding and the losses."""
  import jax

  overrides = {
    "train.total_steps": 3,
    "train.log_every": 1,
    "train.progress": False,
    "train.checkpoint_every": 100,
    "data.max_documents": 30,
    "data.seq_len": 32,  # 8 rows: one per device (data 8) or two (data 4 x model 2)
    "train.batch_size": 8,
  }
  result = pretrain_mlm.train_and_evaluate(load_config(CONFIG, arg, overrides), str(workdir))
  kernel = result.state.params["encoder"]["layer_0"]["intermediate"]["kernel"]
  losses = [h["loss"] for h in result.history if h["split"] == "train"]
  return {"devices": jax.device_count(), "kernel_spec": str(kernel.sharding.spec), "losses": losses}


_EIGHT_DEVICES = """
import json, sys
from tests.core.test_pretrain_mlm import run_for_losses
print(json.dumps([run_for_losses(arg, workdir) for arg, workdir in zip(sys.argv[1::2], sys.argv[2::2])]))
"""


def test_eight_devices_give_the_same_losses_as_one(tmp_path):
  one = run_for_losses("tiny", tmp_path / "one")
  # Data 8 x model 1, and data 4 x model 2 with the FFN split Megatron-style, in one process with 8 host devices.
  env = {**os.environ, "XLA_FLAGS": "--xla_force_host_platform_device_count=8", "PYTHONPATH": REPO}
  runs = ["tiny", str(tmp_path / "eight"), "tiny,tp=true", str(tmp_path / "tp")]
  out = subprocess.run(
    [sys.executable, "-c", _EIGHT_DEVICES, *runs], env=env, cwd=REPO, capture_output=True, text=True, timeout=600
  )
  assert out.returncode == 0, out.stderr[-3000:]
  eight, tensor_parallel = json.loads(out.stdout.strip().splitlines()[-1])
  assert (one["devices"], eight["devices"]) == (1, 8)
  assert len(one["losses"]) == 3
  np.testing.assert_allclose(eight["losses"], one["losses"], rtol=1e-5)
  assert tensor_parallel["kernel_spec"] == "P(None, 'model')"  # the kernel really is sharded
  assert one["kernel_spec"] == "P()"
  np.testing.assert_allclose(tensor_parallel["losses"], one["losses"], rtol=1e-5)


def _command(workdir, steps):
  return [
    sys.executable,
    "-m",
    "core.pretrain_mlm",
    f"--config={CONFIG}:tiny",
    f"--workdir={workdir}",
    f"--config.train.total_steps={steps}",
    "--config.train.checkpoint_every=5",
    "--config.train.log_every=5",
    "--config.train.eval_every=0",
    "--config.data.max_documents=30",
    "--config.data.seq_len=32",  # rows of 32 x 8: a quarter of the tiny job's step, same code paths
    "--config.train.batch_size=8",
    "--noconfig.train.progress",
  ]


def _final_params(workdir, step):
  restored = ocp.StandardCheckpointer().restore(os.path.join(workdir, "checkpoints", str(step), "state"))
  return restored["params"]


def test_sigkill_after_checkpoint_then_rerun_is_bitwise_equal(tmp_path):
  steps = 60
  env = {**os.environ, "PYTHONPATH": REPO}
  run_module(_command(tmp_path / "straight", steps), env=env)

  killed = tmp_path / "killed"
  proc = subprocess.Popen(
    _command(killed, steps), env=env, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
  )
  deadline = time.time() + 300
  while not (killed / "checkpoints" / "10").is_dir():  # orbax renames the finished temp dir to "<step>"
    assert proc.poll() is None, "the run ended before it could be killed"
    assert time.time() < deadline
    time.sleep(0.01)
  proc.send_signal(signal.SIGKILL)
  proc.wait()
  done = sorted(int(p) for p in os.listdir(killed / "checkpoints") if p.isdigit())
  assert done and done[-1] < steps, f"run was not interrupted (checkpoints {done})"

  rerun = run_module(_command(killed, steps) + ["--verbosity=0"], env=env)
  assert len(_info_lines(rerun.stderr)) > 5  # the libraries' INFO logs (orbax: restore, save) when asked for
  records = metrics_lib.read_jsonl(str(killed), "train")
  assert records[-1]["step"] == steps
  straight, resumed = _final_params(tmp_path / "straight", steps), _final_params(killed, steps)
  flat_a, flat_b = _flatten(straight), _flatten(resumed)
  assert flat_a.keys() == flat_b.keys()
  for name in flat_a:
    np.testing.assert_array_equal(flat_a[name], flat_b[name], err_msg=name)


def _info_lines(stderr):
  return [line for line in stderr.splitlines() if re.match(r"I\d{4} \d\d:\d\d:\d\d", line)]


def _flatten(tree, prefix=""):
  if isinstance(tree, dict):
    out = {}
    for k, v in tree.items():
      out.update(_flatten(v, f"{prefix}/{k}"))
    return out
  return {prefix: np.asarray(tree)}


def test_nan_guard_from_the_command_line(tmp_path):
  out = subprocess.run(
    _command(tmp_path, 30) + ["--config.train.inject_nan_at_step=12"],
    cwd=REPO,
    env={**os.environ, "PYTHONPATH": REPO},
    capture_output=True,
    text=True,
    timeout=600,
  )
  assert out.returncode == 1
  assert not _info_lines(out.stderr), out.stderr[-2000:]  # quiet by default: no orbax / absl INFO lines
  last = out.stderr.strip().splitlines()[-1]
  assert last.startswith("error: loss is nan at step 12; training stopped. Last good checkpoint: step 10"), last
  assert sorted(int(p) for p in os.listdir(tmp_path / "checkpoints") if p.isdigit()) == [5, 10]
  params = _final_params(tmp_path, 10)
  assert all(np.all(np.isfinite(v)) for v in _flatten(params).values())


@pytest.mark.parametrize("size", sorted(common.SIZES))
def test_every_size_builds_and_validates(size):
  config = load_config(CONFIG, size, {})
  pretrain_mlm.validate(config)
  assert pretraining.model_config(config).num_layers >= 2
