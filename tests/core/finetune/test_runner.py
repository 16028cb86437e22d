"""The shared finetuning runner end to end on tiny random-init encoders, featurisation round trips, config errors.

The runner is method-agnostic: these tests use the default `Recipe()` (plain Adam, one LR) on the complete
finetuning config of configs/electra/glue.py; ELECTRA's recipe is tested in tests/electra_jax/test_finetune_recipe.py.
"""

import dataclasses
import json
import os

import jax
import optax
import pytest

from core import config as config_lib
from core import pretrained, tree
from core.finetune import examples, features, runner, tasks
from tests.helpers import REPO, load_config

CONFIG = os.path.join(REPO, "configs/electra/glue.py")
NO_DROPOUT = {"model.hidden_dropout_rate": 0.0, "model.attention_dropout_rate": 0.0, "finetune.head_dropout_rate": 0.0}


def tiny(task, **overrides):
  base = {"train.progress": False, "train.batch_size": 8, "finetune.seeds": 1, "finetune.eval_batch_size": 16,
          "train.async_checkpoints": False, "model.hidden_size": 32, "model.num_layers": 1,
          "model.intermediate_size": 64}  # fmt: skip
  return load_config(CONFIG, f"task={task},size=tiny", {**base, **overrides})


def test_classification_and_capital_qa_finetune_end_to_end(tmp_path):
  # Without dropout (capital_qa below trains with it): fewer random-bit programs to compile for the two seeds.
  config = tiny("polarity", **{"task.train_size": 16, "task.dev_size": 20, "finetune.epochs": 1.0,
                               "finetune.seeds": 2, **NO_DROPOUT})  # fmt: skip
  results = runner.run_task(config, str(tmp_path / "polarity"))
  assert results["total_steps"] == 2 and [r["seed"] for r in results["seeds"]] == [0, 1]
  assert 0.0 <= results["median"] <= 100.0 and {"accuracy", "mcc", "f1"} <= set(results["seeds"][0])
  on_disk = json.loads((tmp_path / "polarity" / "results.json").read_text())
  assert on_disk["scores"] == results["scores"] and os.path.isdir(tmp_path / "polarity" / "seed_1" / "checkpoints")
  again = runner.run_task(config, str(tmp_path / "polarity"))  # resumes: every seed is already done
  assert again["scores"] == results["scores"]
  # A finetuning run is itself a pretrained encoder: its seed workdir loads by path, sizes from its config.json.
  loaded, params = pretrained.load_encoder(tmp_path / "polarity" / "seed_0")
  assert (loaded.hidden_size, loaded.num_layers, loaded.num_heads) == (32, 1, 2) and set(params) >= {"layer_0"}

  qa = tiny("capital_qa", **{"task.train_size": 4, "task.dev_size": 8, "finetune.epochs": 1.0})
  results = runner.run_task(qa, str(tmp_path / "qa"))
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
  example = examples.TaggingExample(("Unbelievably", "good", "Paris"), (0, 1, 2))
  first = features.tagging_features([example], tokenizer, 16, "first")
  every = features.tagging_features([example], tokenizer, 16, "all")
  n_pieces = len(tokenizer.tokenize("Unbelievably"))
  assert n_pieces > 1
  assert first.labels[0, : n_pieces + 4].tolist() == [-1, 0] + [-1] * (n_pieces - 1) + [1, 2, -1]
  assert every.labels[0, : n_pieces + 4].tolist() == [-1] + [0] * n_pieces + [1, 2, -1]
  assert first.meta["first_piece"][0] == [1, 1 + n_pieces, 2 + n_pieces]


@pytest.mark.parametrize(
  "overrides,message",
  [
    ({"task.name": "sst3"}, "task.name: unknown value 'sst3' (allowed: cola, sst2, mrpc"),
    ({"init_checkpoint": "/no/such/dir"}, "init_checkpoint: '/no/such/dir': no such file or directory (allowed: "),
    ({"init_checkpoint": REPO}, f"init_checkpoint: {REPO}: holds none of a BERT-family directory"),
    ({"init_checkpoint_step": -1}, "init_checkpoint_step: must be >= 0, got -1"),
    ({"task.label_tokens": "last"}, "task.label_tokens: unknown value 'last' (allowed: first, all)"),
    ({"finetune.seeds": 0}, "finetune.seeds: must be >= 1, got 0"),
    ({"finetune.head_dropout_rate": 1.0}, "finetune.head_dropout_rate: must be in [0, 1), got 1.0"),
    ({"finetune.classifier": "deep"}, "finetune.classifier: unknown value 'deep' (allowed: mlp, linear)"),
    ({"task.data_dir": "/no/glue"}, "task.data_dir: not a directory: '/no/glue'"),
    ({"task.tfds_dir": "/no/tfds"}, "task.tfds_dir: not a directory: '/no/tfds'"),
  ],
)
def test_config_errors_are_one_line(overrides, message):
  config = tiny("sst2", **overrides)
  with pytest.raises(config_lib.ConfigError) as info:
    runner.validate(config)
  assert str(info.value).startswith(message) and "\n" not in str(info.value)


def test_a_remote_tfds_dir_is_checked_when_opened_not_by_isdir():
  runner.validate(tiny("sst2", **{"task.tfds_dir": "gs://bucket/tensorflow_datasets"}))


def test_a_recipe_validates_its_own_fields_after_the_shared_ones():
  def no_sgd(config):
    if config.optimizer.name == "sgd":
      raise config_lib.ConfigError("optimizer.name: this recipe needs Adam")

  recipe = runner.Recipe(validate=no_sgd)
  runner.validate(tiny("sst2"), recipe)
  with pytest.raises(config_lib.ConfigError, match="optimizer.name: this recipe needs Adam"):
    runner.validate(tiny("sst2", **{"optimizer.name": "sgd"}), recipe)
  with pytest.raises(config_lib.ConfigError, match="finetune.seeds"):  # the shared checks come first
    runner.validate(tiny("sst2", **{"optimizer.name": "sgd", "finetune.seeds": 0}), recipe)


def test_a_recipe_supplies_the_optimizer_pieces_and_the_last_word_on_the_task(tmp_path):
  config = tiny("polarity", **{"task.train_size": 8, "task.dev_size": 8})
  prep = runner.prepare(config, str(tmp_path))
  plain = runner.make_task(config, prep, seed=0)
  assert plain.scale_by is None and plain.lr_multipliers is None and plain.initial_params is None  # random init
  scale, seen = optax.scale_by_adam(), []

  def freeze_encoder(task, config, prep):  # what LoRA does: only the head (and adapters) move
    del config, prep
    frozen = lambda params: tree.map_with_path_str(lambda name, _: 0.0 if name.startswith("encoder/") else 1.0, params)
    return dataclasses.replace(task, lr_multipliers=frozen)

  recipe = runner.Recipe(scale_by=lambda c: scale, lr_multipliers=lambda c, encoder: seen.append(encoder),
                         adapt_task=freeze_encoder)  # fmt: skip
  task = runner.make_task(config, prep, seed=0, recipe=recipe)
  assert task.scale_by is scale and seen == [prep.encoder_config]
  multipliers = tree.named_leaves(task.lr_multipliers(jax.eval_shape(task.init_params, jax.random.key(0))))
  assert {v for name, v in multipliers if name.startswith("encoder/")} == {0.0}
  assert {v for name, v in multipliers if name.startswith("head/")} == {1.0}
