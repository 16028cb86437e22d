"""Two `jax.distributed` processes on localhost (gloo CPU collectives) reproduce the one-process run.

The one-process run and the two-process job start together: each process spends its time compiling, so on a
2-core host the three overlap instead of running one after the other.
"""

import json
import os
import pathlib
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
                                          "train.checkpoint_every": 4, "train.eval_every": 0,
                                          "data.max_documents": 30})
result = pretrain_mlm.train_and_evaluate(config, workdir)
print(json.dumps({"process_count": jax.process_count(), "device_count": jax.device_count(),
                  "losses": [float(h["loss"]) for h in result.history if h["split"] == "train"]}))
"""


def _free_port() -> int:
  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    return s.getsockname()[1]


def _start(num_processes, workdir, devices_per_process) -> list[tuple[subprocess.Popen, pathlib.Path]]:
  """Starts the processes of one job; each writes its output to a file (pipes could fill while we wait on another)."""
  env = {**os.environ, "PYTHONPATH": REPO, "XLA_FLAGS": f"--xla_force_host_platform_device_count={devices_per_process}"}
  port = str(_free_port())
  started = []
  for i in range(num_processes):
    log = pathlib.Path(f"{workdir}_{i}")  # + .out / .err
    with open(log.with_suffix(".out"), "w") as out, open(log.with_suffix(".err"), "w") as err:
      args = [sys.executable, "-c", _SCRIPT, str(i), str(num_processes), port, str(workdir), CONFIG]
      started.append((subprocess.Popen(args, cwd=REPO, env=env, stdout=out, stderr=err), log))
  return started


def _results(started: list[tuple[subprocess.Popen, pathlib.Path]]) -> list[dict]:
  outputs = []
  for proc, log in started:
    proc.wait(timeout=600)
    assert proc.returncode == 0, log.with_suffix(".err").read_text()[-3000:]
    outputs.append(json.loads(log.with_suffix(".out").read_text().strip().splitlines()[-1]))
  return outputs


def test_two_processes_equal_one(tmp_path):
  single_procs = _start(1, tmp_path / "one", devices_per_process=2)
  pair_procs = _start(2, tmp_path / "two", devices_per_process=1)
  (single,), pair = _results(single_procs), _results(pair_procs)
  assert [p["process_count"] for p in pair] == [2, 2] and pair[0]["device_count"] == 2
  assert single["device_count"] == 2 and len(single["losses"]) == 4
  np.testing.assert_allclose(pair[0]["losses"], single["losses"], rtol=1e-5)
  assert (tmp_path / "two" / "checkpoints" / "4").is_dir()
