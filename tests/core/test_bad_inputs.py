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


@pytest.fixture(scope="module")
def saved_run(tmp_path_factory):
  workdir = tmp_path_factory.mktemp("saved")
  config = load_config(
    CONFIG,
    "tiny",
    {"train.total_steps": 2, "train.checkpoint_every": 2, "train.progress": False, "data.max_documents": 20},
  )
  pretrain_mlm.train_and_evaluate(config, str(workdir))
  return workdir


def test_checkpoint_from_another_model_is_refused_and_kept(saved_run, tmp_path):
  before = _tree_digest(saved_run / "checkpoints")
  config = load_config(
    CONFIG,
    "tiny",
    {"train.total_steps": 4, "model.intermediate_size": 128, "train.progress": False, "data.max_documents": 20},
  )
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
  config = load_config(CONFIG, "tiny", {"train.total_steps": 4, "train.progress": False, "data.max_documents": 20})
  with pytest.raises(checkpoint_lib.CheckpointError, match=r"checkpoints/2 is unreadable: ") as info:
    pretrain_mlm.train_and_evaluate(config, str(workdir))
  assert "\n" not in str(info.value)


def _cli(args, devices=1):
  env = {**os.environ, "PYTHONPATH": REPO, "XLA_FLAGS": f"--xla_force_host_platform_device_count={devices}"}
  out = subprocess.run(
    [sys.executable, "-m", "core.pretrain_mlm", *args], cwd=REPO, env=env, capture_output=True, text=True, timeout=300
  )
  return out.returncode, out.stderr.strip().splitlines()[-1] if out.stderr.strip() else ""


@pytest.mark.parametrize(
  "override,expected",
  [
    (
      ["--config.train.batch_sise=8"],  # typo: the config is locked
      'error: config override: unknown field batch_sise Did you mean "batch_size" instead of "batch_sise"?',
    ),
    (
      ["--config.train.batch_size=eight"],
      "error: flag --config.train.batch_size=eight: invalid literal for int() with base 10: 'eight'",
    ),
    (["--config.optimizer.peak_lr=-1"], "error: optimizer.peak_lr: must be > 0, got -1.0"),
  ],
  ids=["unknown key", "wrong type", "negative learning rate"],
)
def test_command_line_override_errors(tmp_path, override, expected):
  code, last = _cli([f"--config={CONFIG}:tiny", f"--workdir={tmp_path / 'w'}", *override])
  assert (code, last) == (2, expected)
  assert not (tmp_path / "w").exists()


def test_unknown_config_arg_from_the_command_line(tmp_path):
  code, last = _cli([f"--config={CONFIG}:huge", f"--workdir={tmp_path / 'w'}"])
  assert (code, last) == (2, "error: config arg size: unknown value 'huge' (allowed: tiny, mini, minilm, base)")


def test_batch_not_divisible_by_devices(tmp_path):
  code, last = _cli(
    [f"--config={CONFIG}:tiny", f"--workdir={tmp_path / 'w'}", "--config.train.batch_size=12"], devices=8
  )
  assert code == 2
  assert last == "error: train.batch_size: 12 (micro-batch 12) is not divisible by the 8 data-parallel devices"
  assert not (tmp_path / "w").exists()
