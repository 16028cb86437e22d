"""Bad input gets one documented line naming the field and the allowed values, before any work starts.

In-process cases call `pretrain_mlm.validate` / `train_and_evaluate`; command-line cases run the entry point and read
its last stderr line. Each case also checks that nothing already saved was touched.
"""

import hashlib
import os
import subprocess
import sys

import pytest

from core import checkpoint as checkpoint_lib
from core import config as config_lib
from core import pretrain_mlm
from tests.helpers import REPO, load_config

CONFIG = os.path.join(REPO, "configs/core/bert_mlm.py")

IN_PROCESS = [
  ("negative learning rate", {"optimizer.peak_lr": -1e-4}, r"^optimizer\.peak_lr: must be > 0, got -0\.0001$"),
  (
    "unknown optimizer",
    {"optimizer.name": "adagrad"},
    r"^optimizer\.name: unknown value 'adagrad' \(allowed: adamw, adam, sgd, lamb\)$",
  ),
  ("unknown schedule", {"optimizer.schedule": "step"}, r"^optimizer\.schedule: unknown value 'step' \(allowed: "),
  ("beta outside (0, 1)", {"optimizer.b2": 1.0}, r"^optimizer\.b2: must be in \(0\.0, 1\.0\), got 1\.0$"),
  ("zero steps", {"train.total_steps": 0}, r"^train\.total_steps: must be >= 1, got 0$"),
  (
    "accumulation does not split batch",
    {"train.grad_accum_steps": 3},
    r"^train\.batch_size: 16 is not divisible by 3 ",
  ),
  (
    "sequence longer than positions",
    {"data.seq_len": 1024},
    r"^data\.seq_len: 1024 exceeds model\.max_position_embeddings 512$",
  ),
  (
    "missing vocab",
    {"data.vocab_path": "/nonexistent/vocab.txt"},
    r"^data\.vocab_path: file not found: '/nonexistent/vocab\.txt'; a BERT WordPiece vocab\.txt",
  ),
  ("unknown corpus", {"data.corpus": "c4"}, r"^data\.corpus: unknown value 'c4' \(allowed: wikipedia, lee\)$"),
  ("mask probability outside (0, 1)", {"mlm.mask_prob": 1.5}, r"^mlm\.mask_prob: must be in \(0\.0, 1\.0\), got 1\.5$"),
  (
    "hidden not divisible by heads",
    {"model.num_heads": 3},
    r"^model: BertConfig\.hidden_size 64 is not divisible by num_heads 3$",
  ),
  (
    "dropout of one",
    {"model.hidden_dropout_rate": 1.0},
    r"^model: BertConfig\.hidden_dropout_rate must be in \[0, 1\), got 1\.0$",
  ),
  (
    "unknown init checkpoint",
    {"init_from": "/nonexistent/bert"},
    r"^init_from: '/nonexistent/bert' is neither a HuggingFace checkpoint directory nor one of '', 'minilm'$",
  ),
  ("mesh larger than the machine", {"mesh.model": 3}, r"^mesh\.model: 3 does not divide the 1 devices$"),
]


@pytest.mark.parametrize("name,overrides,message", IN_PROCESS, ids=[c[0] for c in IN_PROCESS])
def test_bad_config_value_is_one_line_error(tmp_path, name, overrides, message):
  config = load_config(CONFIG, "tiny", overrides)
  with pytest.raises(config_lib.ConfigError, match=message) as info:
    pretrain_mlm.train_and_evaluate(config, str(tmp_path / "workdir"))
  assert "\n" not in str(info.value)
  assert not (tmp_path / "workdir").exists()  # raised before anything was written


def test_unknown_config_size_is_one_line_error():
  with pytest.raises(config_lib.ConfigError, match=r"^config arg size: unknown value 'huge' \(allowed: tiny, mini, "):
    load_config(CONFIG, "huge", {})


def test_unwritable_workdir(tmp_path):
  blocker = tmp_path / "file"
  blocker.write_text("not a directory")
  with pytest.raises(config_lib.ConfigError, match=r"^--workdir: not writable: "):
    pretrain_mlm.train_and_evaluate(load_config(CONFIG, "tiny", {}), str(blocker / "run"))


def _tree_digest(root):
  digest = hashlib.sha256()
  for folder, _, files in sorted(os.walk(root)):
    for name in sorted(files):
      with open(os.path.join(folder, name), "rb") as f:
        digest.update(name.encode() + f.read())
  return digest.hexdigest()


# A 1-layer encoder without dropout: the same checkpoint and refusal code paths, a smaller program to compile.
SAVED = {
  "model.num_layers": 1,
  "model.hidden_dropout_rate": 0.0,
  "model.attention_dropout_rate": 0.0,
  "train.progress": False,
  "data.max_documents": 20,
}


@pytest.fixture(scope="module")
def saved_run(tmp_path_factory):
  workdir = tmp_path_factory.mktemp("saved")
  config = load_config(CONFIG, "tiny", {**SAVED, "train.total_steps": 2, "train.checkpoint_every": 2})
  pretrain_mlm.train_and_evaluate(config, str(workdir))
  return workdir


def test_checkpoint_from_another_model_is_refused_and_kept(saved_run, tmp_path):
  before = _tree_digest(saved_run / "checkpoints")
  config = load_config(CONFIG, "tiny", {**SAVED, "train.total_steps": 4, "model.intermediate_size": 128})
  with pytest.raises(
    checkpoint_lib.CheckpointError,
    match=r"params/encoder/layer_0/intermediate/bias has shape \(256,\), the model expects \(128,\)",
  ) as info:
    pretrain_mlm.train_and_evaluate(config, str(saved_run))
  assert "\n" not in str(info.value)
  assert _tree_digest(saved_run / "checkpoints") == before


def test_corrupt_checkpoint_is_refused(saved_run, tmp_path):
  import shutil

  workdir = tmp_path / "corrupt"
  shutil.copytree(saved_run, workdir)
  for folder, _, files in os.walk(workdir / "checkpoints" / "2" / "state"):
    for name in files:
      with open(os.path.join(folder, name), "wb") as f:
        f.write(b"\x00garbage")
  config = load_config(CONFIG, "tiny", {**SAVED, "train.total_steps": 4})
  with pytest.raises(checkpoint_lib.CheckpointError, match=r"checkpoints/2 is unreadable: ") as info:
    pretrain_mlm.train_and_evaluate(config, str(workdir))
  assert "\n" not in str(info.value)


# Command-line cases: (id, arguments after --workdir, simulated devices, expected last stderr line). Each is a fresh
# process (the CLI is the property); the `cli` fixture starts them all at once and collects their exits.
CLI_CASES = [
  (
    "unknown key",  # typo: the config is locked
    [f"--config={CONFIG}:tiny", "--config.train.batch_sise=8"],
    1,
    'error: config override: unknown field batch_sise Did you mean "batch_size" instead of "batch_sise"?',
  ),
  (
    "wrong type",
    [f"--config={CONFIG}:tiny", "--config.train.batch_size=eight"],
    1,
    "error: flag --config.train.batch_size=eight: invalid literal for int() with base 10: 'eight'",
  ),
  (
    "negative learning rate",
    [f"--config={CONFIG}:tiny", "--config.optimizer.peak_lr=-1"],
    1,
    "error: optimizer.peak_lr: must be > 0, got -1.0",
  ),
  (
    "nan clip norm",
    [f"--config={CONFIG}:tiny", "--config.optimizer.clip_norm=nan"],
    1,
    "error: optimizer.clip_norm: must be a finite number within float32 range, got nan",
  ),
  (
    "unknown config arg",
    [f"--config={CONFIG}:huge"],
    1,
    "error: config arg size: unknown value 'huge' (allowed: tiny, mini, small, minilm, base)",
  ),
  (
    "missing config file",
    ["--config=configs/core/nope.py"],
    1,
    "error: --config: file not found: 'configs/core/nope.py'",
  ),
  (
    "batch not divisible by devices",
    [f"--config={CONFIG}:tiny", "--config.train.batch_size=12"],
    8,
    "error: train.batch_size: 12 (micro-batch 12) is not divisible by the 8 data-parallel devices",
  ),
]


@pytest.fixture(scope="module")
def cli(tmp_path_factory):
  """{case id: (exit code, last stderr line, workdir)} for every CLI case, run concurrently."""
  root = tmp_path_factory.mktemp("cli")
  running = {}
  for i, (name, args, devices, _) in enumerate(CLI_CASES):
    env = {**os.environ, "PYTHONPATH": REPO, "XLA_FLAGS": f"--xla_force_host_platform_device_count={devices}"}
    workdir = root / str(i)
    command = [sys.executable, "-m", "core.pretrain_mlm", f"--workdir={workdir}", *args]
    proc = subprocess.Popen(command, cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    running[name] = (proc, workdir)
  results = {}
  for name, (proc, workdir) in running.items():
    _, stderr = proc.communicate(timeout=300)
    results[name] = (proc.returncode, stderr.strip().splitlines()[-1] if stderr.strip() else "", workdir)
  return results


@pytest.mark.parametrize("name,expected", [(c[0], c[3]) for c in CLI_CASES], ids=[c[0] for c in CLI_CASES])
def test_command_line_errors_are_one_line_before_any_work(cli, name, expected):
  code, last, workdir = cli[name]
  assert (code, last) == (2, expected)
  assert not workdir.exists()
