"""Two `jax.distributed` processes on localhost (gloo CPU collectives) reproduce the one-process run."""

import json
import os
import socket
import subprocess
import sys

import numpy as np

from tests.helpers import REPO

CONFIG = os.path.join(REPO, "configs/core/bert_mlm.py")

_SCRIPT = """
import json, sys
import jax
process_id, num_processes, port, workdir = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3], sys.argv[4]
if num_processes > 1:
  jax.config.update("jax_cpu_collectives_implementation", "gloo")
  jax.distributed.initialize(coordinator_address=f"127.0.0.1:{port}", num_processes=num_processes,
                             process_id=process_id)
from tests.helpers import load_config
from core import pretrain_mlm
config = load_config(sys.argv[5], "tiny", {"train.total_steps": 4, "train.log_every": 1, "train.progress": False,
                                          "train.checkpoint_every": 2, "train.eval_every": 0,
                                          "data.max_documents": 30})
result = pretrain_mlm.train_and_evaluate(config, workdir)
print(json.dumps({"process_count": jax.process_count(), "device_count": jax.device_count(),
                  "losses": [float(h["loss"]) for h in result.history if h["split"] == "train"]}))
"""


def _free_port() -> int:
  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    return s.getsockname()[1]


def _launch(num_processes, workdir, devices_per_process):
  env = {**os.environ, "PYTHONPATH": REPO, "XLA_FLAGS": f"--xla_force_host_platform_device_count={devices_per_process}"}
  port = str(_free_port())
  procs = [
    subprocess.Popen(
      [sys.executable, "-c", _SCRIPT, str(i), str(num_processes), port, str(workdir), CONFIG],
      cwd=REPO,
      env=env,
      stdout=subprocess.PIPE,
      stderr=subprocess.PIPE,
      text=True,
    )
    for i in range(num_processes)
  ]
  outputs = []
  for proc in procs:
    out, err = proc.communicate(timeout=600)
    assert proc.returncode == 0, err[-3000:]
    outputs.append(json.loads(out.strip().splitlines()[-1]))
  return outputs


def test_two_processes_equal_one(tmp_path):
  (single,) = _launch(1, tmp_path / "one", devices_per_process=2)
  pair = _launch(2, tmp_path / "two", devices_per_process=1)
  assert [p["process_count"] for p in pair] == [2, 2] and pair[0]["device_count"] == 2
  assert single["device_count"] == 2 and len(single["losses"]) == 4
  np.testing.assert_allclose(pair[0]["losses"], single["losses"], rtol=1e-5)
  assert (tmp_path / "two" / "checkpoints" / "4").is_dir()
