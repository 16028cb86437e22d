"""End-to-end ELECTRA / MLM-twin pretraining on the bundled corpus, resume, and one-line config errors."""

import json
import os
import subprocess
import sys

import numpy as np
import orbax.checkpoint as ocp
import pytest

from core import config as config_lib
from core import metrics as metrics_lib
from electra_jax import pretrain
from tests.helpers import REPO, load_config

TINY = os.path.join(REPO, "configs/electra/tiny.py")


SMALL = {
  "model.num_layers": 1,  # the tiny config with 1 layer: same code paths, fast compile
  "data.seq_len": 64,
  "data.max_documents": 12,
  "train.batch_size": 4,
  "train.total_steps": 2,
  "train.log_every": 1,
  "train.eval_every": 2,
  "train.eval_batches": 1,
  "train.checkpoint_every": 2,
  "train.progress": False,
}


def _config(arg=None, **overrides):
  return load_config(TINY, arg, {**SMALL, **overrides})


@pytest.mark.slow
def test_electra_steps_checkpoint_both_networks_and_resume(tmp_path):
  no_dropout = {"model.hidden_dropout_rate": 0.0, "model.attention_dropout_rate": 0.0}  # 2x faster compile
  result = pretrain.train_and_evaluate(_config(**no_dropout), str(tmp_path))
  train = [h for h in result.history if h["split"] == "train"]
  evals = [h for h in result.history if h["split"] == "eval"]
  assert [h["step"] for h in train] == [1, 2] and result.resumed_from is None
  first = train[0]
  assert abs(first["mlm_loss"] - np.log(30522)) < 0.5  # near-uniform generator at init
  assert 0.0 < first["disc_loss"] < 2.0 and 0.0 < first["fake_fraction"] < 0.3
  np.testing.assert_allclose(first["loss"], first["mlm_loss"] + 50.0 * first["disc_loss"], rtol=1e-4)
  for name in ("mlm_accuracy", "sampled_accuracy", "disc_accuracy", "disc_precision", "disc_recall", "disc_auc"):
    assert 0.0 <= first[name] <= 1.0, name
  per_step = json.loads((tmp_path / "flops.json").read_text())["pretrain_flops_per_step"]
  assert evals and evals[-1]["pretrain_flops"] == pytest.approx(2 * per_step)
  assert np.isfinite(evals[-1]["disc_auc"]) and np.isfinite(evals[-1]["mlm_loss"])

  state = ocp.StandardCheckpointer().restore(str(tmp_path / "checkpoints" / "2" / "state"))
  params = state["params"]
  assert set(params) == {"embeddings", "generator", "discriminator"}
  assert {"mlm_head", "layer_0", "embeddings_project"} <= set(params["generator"])
  assert {"head", "layer_0"} <= set(params["discriminator"]) and "embeddings" not in params["discriminator"]
  assert params["embeddings"]["word_embeddings"]["embedding"].shape == (30522, 128)

  # Step 3 from the command line: it resumes from step 2, and the run is quiet (no orbax / absl INFO lines).
  flags = {**SMALL, **no_dropout, "train.total_steps": 3, "train.eval_every": 0}
  out = subprocess.run(
    [sys.executable, "-m", "electra_jax.pretrain", f"--config={TINY}", f"--workdir={tmp_path}"]
    + [f"--config.{name}={value}" for name, value in flags.items()],
    cwd=REPO,
    env={**os.environ, "PYTHONPATH": REPO},
    capture_output=True,
    text=True,
    timeout=600,
  )
  assert out.returncode == 0, out.stderr[-3000:]
  assert out.stderr.strip() == "", out.stderr[-3000:]
  assert [r["step"] for r in metrics_lib.read_jsonl(str(tmp_path), "train")] == [1, 2, 3]


@pytest.mark.slow
def test_mlm_twin_step(tmp_path):
  config = _config("mlm=true", **{"train.eval_every": 0})  # with dropout, as configured
  assert config.masking.mask_token_fraction == 0.8 and config.masking.random_token_fraction == 0.1
  result = pretrain.train_and_evaluate(config, str(tmp_path))
  last = result.history[-1]
  assert last["step"] == 2 and abs(last["mlm_loss"] - np.log(30522)) < 0.5
  assert "disc_loss" not in last
  assert set(result.state.params) == {"encoder", "mlm_head"}


@pytest.mark.parametrize(
  "overrides, message",
  [
    ({"objective.generator_hidden_fraction": 0.0}, "objective.generator_hidden_fraction: must be in (0, 1], got 0.0"),
    ({"objective.generator_hidden_fraction": 1.5}, "objective.generator_hidden_fraction: must be in (0, 1], got 1.5"),
    ({"masking.mask_prob": 0.0}, "masking.mask_prob: must be in (0.0, 1.0), got 0.0"),
    ({"masking.mask_prob": 1.0}, "masking.mask_prob: must be in (0.0, 1.0), got 1.0"),
    ({"objective.name": "bert"}, "objective.name: unknown value 'bert' (allowed: electra, mlm)"),
    ({"objective.temperature": 0.0}, "objective.temperature: must be > 0, got 0.0"),
    ({"data.seq_len": 1024}, "data.seq_len: 1024 exceeds model.max_position_embeddings 512"),
    ({"data.corpus": "tfds:bookcorpus"}, "data.corpus: unknown value 'tfds:bookcorpus'"),
    ({"masking.random_token_fraction": 0.5}, "masking.random_token_fraction: must be in [0.0, 0.15"),
  ],
)
def test_bad_config_values_are_one_line_errors(overrides, message):
  with pytest.raises(config_lib.ConfigError) as error:
    pretrain.validate(load_config(TINY, None, overrides))
  assert str(error.value).startswith(message) and "\n" not in str(error.value)


def test_generator_fraction_that_breaks_the_head_count_is_a_config_error():
  # Generator hidden 200 gets max(1, 200 // 64) = 3 heads, which do not divide 200.
  config = load_config(
    TINY, None, {"model.hidden_size": 200, "model.num_heads": 2, "objective.generator_hidden_fraction": 1.0}
  )
  with pytest.raises(config_lib.ConfigError, match=r"objective.generator_hidden_fraction: 1.0 gives a bad generator"):
    pretrain.validate(config)


def test_paper_corpus_offline_is_a_config_error():
  config = load_config(TINY, None, {"data.corpus": "tfds:wikipedia/20230601.en", "data.tfds_dir": "/nonexistent"})
  pretrain.validate(config)  # the name is allowed; the data is not prepared here
  with pytest.raises(config_lib.ConfigError, match=r"^data.corpus: 'tfds:wikipedia/20230601.en' is not available"):
    pretrain._tfds_documents(config, None)


@pytest.mark.parametrize("corpus", ["tfds:wikipedia", "tfds:openwebtext"])
def test_paper_corpora_stream_tokenized_documents_under_tfds_mock_data(corpus):
  import grain
  import tensorflow_datasets as tfds

  from core import data as data_lib
  from core.data import corpora, tokenizers

  tokenizer = tokenizers.WordPieceTokenizer(corpora.bert_vocab_path())
  config = load_config(TINY, None, {"data.corpus": corpus, "data.max_documents": 4, "data.eval_fraction": 0.25})
  pretrain.validate(config)
  with tfds.testing.mock_data(policy=tfds.testing.MockPolicy.USE_CODE, num_examples=6):
    train, held_out = pretrain.load_documents(config, tokenizer)
    assert isinstance(train, grain.MapDataset) and (len(train), len(held_out)) == (3, 1)  # lazy, max_documents
    source = data_lib.paper_dataset(pretrain.TFDS_CORPORA[corpus], "train")
    expected = tokenizer.encode_documents([source[i]["text"] for i in range(4)])
    docs = [held_out[0]] + [train[i] for i in range(3)]  # the first article is held out
  for doc, want in zip(docs, expected):
    assert doc.dtype == np.int32
    np.testing.assert_array_equal(doc, want)


@pytest.mark.parametrize("size", ["tiny", "small", "base", "large"])
def test_every_size_and_twin_validates(size):
  for arg in (None, "mlm=true"):
    pretrain.validate(load_config(os.path.join(REPO, f"configs/electra/{size}.py"), arg, {}))


def test_cli_bad_value_exits_2_with_one_line(tmp_path):
  out = subprocess.run(
    [
      sys.executable,
      "-m",
      "electra_jax.pretrain",
      f"--config={TINY}",
      f"--workdir={tmp_path}",
      "--config.objective.generator_hidden_fraction=0",
    ],
    check=False,
    cwd=REPO,
    env={**os.environ, "PYTHONPATH": REPO},
    capture_output=True,
    text=True,
    timeout=300,
  )
  assert out.returncode == 2
  assert out.stderr.strip().splitlines()[-1] == "error: objective.generator_hidden_fraction: must be in (0, 1], got 0.0"
  assert not os.listdir(tmp_path)


def test_demo_entry_point_runs_end_to_end(tmp_path):
  import subprocess
  import sys

  from tests.helpers import REPO

  def demo():
    argv = [sys.executable, "-m", "electra_jax.demo", f"--workdir={tmp_path}", "--steps=2", "--tasks=polarity",
            "--train_size=32"]  # fmt: skip
    out = subprocess.run(argv, cwd=REPO, capture_output=True, text=True, timeout=600,
                         env={**__import__("os").environ, "PYTHONPATH": REPO})  # fmt: skip
    assert out.returncode == 0, out.stderr[-3000:]
    return out.stdout.strip().splitlines()

  table = demo()
  assert table[-2].split()[:3] == ["task", "metric", "random"] and table[-1].startswith("polarity")
  # `make demo` again over the same workdir: every run is finished and read back, the same lines are printed.
  pretrained = [line for line in table if line.startswith("pretrained 2 steps: ")]
  again = demo()
  assert pretrained and [line for line in again if line.startswith("pretrained")] == pretrained
  assert again[-2:] == table[-2:]
