"""End-to-end runs of the reference job (`core.pretrain_mlm`): learning, sharding equivalence, preemption."""

import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import orbax.checkpoint as ocp
import pytest

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
    },
  )
  result = pretrain_mlm.train_and_evaluate(config, str(tmp_path))
  train = metrics_lib.read_jsonl(str(tmp_path), "train")
  assert train[0]["loss"] > 9.5  # ~ln(30522) = 10.33 at init
  assert train[-1]["loss"] < train[0]["loss"] - 1.0  # frequent tokens are learnt within 60 steps
  evals = [h for h in result.history if h["split"] == "eval"]
  assert evals and 0.0 < evals[-1]["mlm_accuracy"] < 1.0


_LOSSES_SCRIPT = """
import json, sys
import jax
from tests.helpers import load_config
from core import pretrain_mlm, pretraining
config = load_config(sys.argv[1], sys.argv[3], {"train.total_steps": 5, "train.log_every": 1, "train.progress": False,
                                          "train.checkpoint_every": 100, "data.max_documents": 30})
result = pretrain_mlm.train_and_evaluate(config, sys.argv[2])
kernel = result.state.params["encoder"]["layer_0"]["intermediate"]["kernel"]
print(json.dumps({"devices": jax.device_count(), "kernel_spec": str(kernel.sharding.spec),
                  "losses": [h["loss"] for h in result.history if h["split"] == "train"]}))
"""


def _losses(n_devices, workdir, arg="tiny"):
  env = {**os.environ, "XLA_FLAGS": f"--xla_force_host_platform_device_count={n_devices}", "PYTHONPATH": REPO}
  out = subprocess.run(
    [sys.executable, "-c", _LOSSES_SCRIPT, CONFIG, str(workdir), arg],
    env=env,
    cwd=REPO,
    capture_output=True,
    text=True,
    timeout=600,
  )
  assert out.returncode == 0, out.stderr[-3000:]
  return json.loads(out.stdout.strip().splitlines()[-1])


def test_eight_devices_give_the_same_losses_as_one(tmp_path):
  one, eight = _losses(1, tmp_path / "one"), _losses(8, tmp_path / "eight")
  assert (one["devices"], eight["devices"]) == (1, 8)
  assert len(one["losses"]) == 5
  np.testing.assert_allclose(eight["losses"], one["losses"], rtol=1e-5)
  # Data 4 x model 2 with the FFN split Megatron-style: same numbers, and the kernel really is sharded.
  tensor_parallel = _losses(8, tmp_path / "tp", arg="tiny,tp=true")
  assert tensor_parallel["kernel_spec"] == "P(None, 'model')"
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

  run_module(_command(killed, steps), env=env)
  records = metrics_lib.read_jsonl(str(killed), "train")
  assert records[-1]["step"] == steps
  straight, resumed = _final_params(tmp_path / "straight", steps), _final_params(killed, steps)
  flat_a, flat_b = _flatten(straight), _flatten(resumed)
  assert flat_a.keys() == flat_b.keys()
  for name in flat_a:
    np.testing.assert_array_equal(flat_a[name], flat_b[name], err_msg=name)


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
  last = out.stderr.strip().splitlines()[-1]
  assert last.startswith("error: loss is nan at step 12; training stopped. Last good checkpoint: step 10"), last
  assert sorted(int(p) for p in os.listdir(tmp_path / "checkpoints") if p.isdigit()) == [5, 10]
  params = _final_params(tmp_path, 10)
  assert all(np.all(np.isfinite(v)) for v in _flatten(params).values())


@pytest.mark.parametrize("size", ["tiny", "mini", "minilm", "base"])
def test_every_size_builds_and_validates(size):
  config = load_config(CONFIG, size, {})
  pretrain_mlm.validate(config)
  assert pretraining.model_config(config).num_layers >= 2
