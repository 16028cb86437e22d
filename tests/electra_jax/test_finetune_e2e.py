"""Finetuning end to end on tiny random-init encoders, the pretraining → finetuning hand-off, and config errors."""

import json
import os

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from core import bert as bert_lib
from core import checkpoint as checkpoint_lib
from core import config as config_lib
from core import train as train_lib
from electra_jax import features, finetune, handoff, tasks
from tests.helpers import REPO, load_config

CONFIG = os.path.join(REPO, "configs/electra/glue.py")
ENCODER = bert_lib.BertConfig(
  vocab_size=30522, hidden_size=32, num_layers=2, num_heads=4, intermediate_size=64, embedding_size=16,
  max_position_embeddings=64,
)  # fmt: skip


def _tiny(task, **overrides):
  base = {"train.progress": False, "train.batch_size": 8, "finetune.seeds": 1, "finetune.eval_batch_size": 16,
          "train.async_checkpoints": False, "model.hidden_size": 32, "model.num_layers": 2,
          "model.intermediate_size": 64}  # fmt: skip
  return load_config(CONFIG, f"task={task},size=tiny", {**base, **overrides})


def test_classification_and_capital_qa_finetune_end_to_end(tmp_path):
  config = _tiny("polarity", **{"task.train_size": 16, "task.dev_size": 20, "finetune.epochs": 1.0,
                                "finetune.seeds": 2})  # fmt: skip
  results = finetune.run_task(config, str(tmp_path / "polarity"))
  assert results["total_steps"] == 2 and [r["seed"] for r in results["seeds"]] == [0, 1]
  assert 0.0 <= results["median"] <= 100.0 and {"accuracy", "mcc", "f1"} <= set(results["seeds"][0])
  on_disk = json.loads((tmp_path / "polarity" / "results.json").read_text())
  assert on_disk["scores"] == results["scores"] and os.path.isdir(tmp_path / "polarity" / "seed_1" / "checkpoints")
  again = finetune.run_task(config, str(tmp_path / "polarity"))  # resumes: every seed is already done
  assert again["scores"] == results["scores"]

  qa = _tiny("capital_qa", **{"task.train_size": 4, "task.dev_size": 8, "finetune.epochs": 1.0})
  results = finetune.run_task(qa, str(tmp_path / "qa"))
  assert results["total_steps"] == 2 and results["task_type"] == "span_qa"  # 4 questions x 4 contexts / batch 8
  assert {"exact_match", "f1", "score"} <= set(results["seeds"][0])


def test_qa_and_tagging_features_decode_back_to_the_gold_answer():
  from core.data import corpora, tokenizers

  tokenizer = tokenizers.WordPieceTokenizer(corpora.bert_vocab_path())
  dev = tasks.load_task("capital_qa").dev[:10]
  feats = features.qa_features(dev, tokenizer, 128, training=True)
  assert len(feats) == 10
  for row, example in enumerate(dev):
    start, end = feats.labels[row]
    assert feats.inputs["context_mask"][row, start] == 1
    predicted = features.qa_prediction_text(feats.meta, row, int(start), int(end))
    assert predicted.rstrip(":") == example.answers[0]
  example = tasks.TaggingExample(("Unbelievably", "good", "Paris"), (0, 1, 2))
  first = features.tagging_features([example], tokenizer, 16, "first")
  every = features.tagging_features([example], tokenizer, 16, "all")
  n_pieces = len(tokenizer.tokenize("Unbelievably"))
  assert n_pieces > 1
  assert first.labels[0, : n_pieces + 4].tolist() == [-1, 0] + [-1] * (n_pieces - 1) + [1, 2, -1]
  assert every.labels[0, : n_pieces + 4].tolist() == [-1] + [0] * n_pieces + [1, 2, -1]
  assert first.meta["first_piece"][0] == [1, 1 + n_pieces, 2 + n_pieces]


def _save_pretraining_run(workdir, params, config_json=None):
  state = train_lib.TrainState(
    step=jnp.array(7, jnp.int32),
    params=params,
    opt_state=optax.adam(1e-3).init(params),
    rng=jax.random.key_data(jax.random.key(0)),
  )
  checkpointer = checkpoint_lib.Checkpointer(str(workdir), async_save=False)
  checkpointer.save(3, state)
  checkpointer.save(7, state)
  checkpointer.close()
  if config_json is not None:
    (workdir / "config.json").write_text(json.dumps(config_json))


def test_handoff_from_electra_and_mlm_checkpoints(tmp_path):
  dummy = jnp.zeros((1, 4), jnp.int32)
  encoder = bert_lib.BertEncoder(ENCODER).init(jax.random.key(1), dummy)["params"]
  body = {k: v for k, v in encoder.items() if k != "embeddings"}
  generator = {"layer_0": {"w": jnp.ones((16, 8))}, "embeddings_project": {"kernel": jnp.ones((16, 8))}}
  electra = {"embeddings": encoder["embeddings"], "discriminator": {**body, "head": {"kernel": jnp.ones((32, 1))}},
             "generator": generator}  # fmt: skip
  _save_pretraining_run(tmp_path / "electra", electra, {"model": {"discriminator": {"num_heads": 4}, "x": 1}})
  config, params = handoff.load_pretrained_encoder(tmp_path / "electra")
  assert config == ENCODER.replace()  # sizes from the shapes, heads from config.json
  jax.tree.map(np.testing.assert_array_equal, params, jax.tree.map(np.asarray, encoder))

  mlm = {"encoder": encoder, "mlm_head": {"bias": jnp.zeros(30522)}}
  _save_pretraining_run(tmp_path / "mlm", mlm)
  config, params = handoff.load_pretrained_encoder(tmp_path / "mlm", num_heads=4)
  assert config.num_heads == 4 and config.embedding_size == 16 and config.num_layers == 2
  jax.tree.map(np.testing.assert_array_equal, params, jax.tree.map(np.asarray, encoder))
  config, _ = handoff.load_pretrained_encoder(tmp_path / "mlm")  # no config.json, no hint: hidden // 64 -> 1 head
  assert config.num_heads == 1
  config, _ = handoff.load_pretrained_encoder(tmp_path / "mlm", heads_for_hidden={32: 8, 256: 4})
  assert config.num_heads == 8

  assert handoff.load_pretrained_encoder("") == (None, None)
  with pytest.raises(handoff.HandoffError, match="neither a pretraining workdir"):
    handoff.load_pretrained_encoder(tmp_path)

  # The finetuning run starts from exactly the discriminator encoder (generator discarded).
  run = _tiny("polarity", **{"init_checkpoint": str(tmp_path / "electra"), "task.train_size": 8, "task.dev_size": 8})
  prep = finetune.prepare(run, str(tmp_path / "ft"))
  assert prep.encoder_config.hidden_size == 32 and prep.encoder_config.num_heads == 4
  task = finetune.make_task(run, prep, seed=0)
  init = train_lib.init_state(task, optax.identity(), seed=0)(task.initial_params).params
  jax.tree.map(np.testing.assert_array_equal, init["encoder"], jax.tree.map(np.asarray, encoder))
  assert set(init) == {"encoder", "head"} and set(task.initial_params) == {"encoder"}


@pytest.mark.parametrize(
  "overrides,message",
  [
    ({"task.name": "sst3"}, "task.name: unknown value 'sst3' (allowed: cola, sst2, mrpc"),
    ({"init_checkpoint": "/no/such/dir"}, "init_checkpoint: '/no/such/dir' does not exist"),
    ({"finetune.layerwise_lr_decay": 0.0}, "finetune.layerwise_lr_decay: must be in (0, 1], got 0.0"),
    ({"finetune.layerwise_lr_decay": 1.5}, "finetune.layerwise_lr_decay: must be in (0, 1], got 1.5"),
    ({"task.label_tokens": "last"}, "task.label_tokens: unknown value 'last' (allowed: first, all)"),
    ({"finetune.seeds": 0}, "finetune.seeds: must be >= 1, got 0"),
    ({"task.data_dir": "/no/glue"}, "task.data_dir: not a directory: '/no/glue'"),
  ],
)
def test_config_errors_are_one_line(overrides, message):
  config = _tiny("sst2", **overrides)
  with pytest.raises(config_lib.ConfigError) as info:
    finetune.validate(config)
  assert str(info.value).startswith(message) and "\n" not in str(info.value)


def test_config_file_args():
  bare = load_config(CONFIG, "sst2", {})
  assert bare.task.name == "sst2" and bare.model.hidden_size == 256 and bare.optimizer.peak_lr == 3e-4
  assert bare.finetune.epochs == 3 and bare.finetune.layerwise_lr_decay == 0.8 and bare.optimizer.weight_decay == 0
  large = load_config(CONFIG, "task=rte,size=large", {})
  assert large.finetune.epochs == 10 and large.finetune.layerwise_lr_decay == 0.9 and large.optimizer.peak_lr == 5e-5
  with pytest.raises(config_lib.ConfigError, match="config arg task: unknown value 'imdb'"):
    load_config(CONFIG, "imdb", {})
