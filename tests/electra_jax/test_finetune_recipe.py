"""ELECTRA's finetuning recipe: layer-wise LR decay, its optimizer hooks and config, and the pretraining hand-off
(discriminator encoder -> export directory -> finetuning init)."""

import functools
import os

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from core import bert as bert_lib
from core import config as config_lib
from core import optim, pretrained
from core import train as train_lib
from core.finetune import heads, runner
from electra_jax import export, finetune
from electra_jax import model as model_lib
from tests.helpers import REPO, load_config

CONFIG = os.path.join(REPO, "configs/electra/glue.py")
ENCODER = bert_lib.BertConfig(
  vocab_size=50, hidden_size=16, num_layers=3, num_heads=2, intermediate_size=32, embedding_size=8,
  max_position_embeddings=32,
)  # fmt: skip


@functools.cache
def _classifier_params():
  ids = jnp.ones((1, 4), jnp.int32)
  return jax.jit(heads.FinetuneModel(ENCODER, "classification", num_labels=2).init)(jax.random.key(0), ids)["params"]


def test_layerwise_lr_multipliers_for_three_layers():
  params = _classifier_params()
  d = 0.8
  intended = finetune.layerwise_lr_multipliers(params, 3, d)
  bug = finetune.layerwise_lr_multipliers(params, 3, d, reference_bug=True)
  expect_intended = {"embeddings": 0.4096, "embeddings_project": 0.4096, "layer_0": 0.512, "layer_1": 0.64,
                     "layer_2": 0.8}  # fmt: skip
  expect_bug = {
    "embeddings": 0.32768,
    "embeddings_project": 0.32768,
    "layer_0": 0.4096,
    "layer_1": 0.512,
    "layer_2": 0.64,
  }  # fmt: skip  (reference code: top layer d^2, google-research/electra #51)
  for name, value in expect_intended.items():
    np.testing.assert_allclose(jax.tree.leaves(intended["encoder"][name]), value, rtol=1e-12)
    np.testing.assert_allclose(jax.tree.leaves(bug["encoder"][name]), expect_bug[name], rtol=1e-12)
  assert set(jax.tree.leaves(intended["head"])) == {1.0} and set(jax.tree.leaves(bug["head"])) == {1.0}


def test_layerwise_multipliers_scale_the_updates_in_core_optimizer():
  params = {"encoder": {"embeddings": {"w": jnp.ones(2)}, "layer_0": {"w": jnp.ones(2)}}, "head": {"w": jnp.ones(2)}}
  opt = config_lib.default_optimizer()
  opt.update(name="sgd", b1=0.0, peak_lr=1.0, schedule="constant", weight_decay=0.0, clip_norm=0.0)
  tx, _ = optim.make_optimizer(opt, 10, lr_multipliers=lambda p: finetune.layerwise_lr_multipliers(p, 1, 0.5))
  grads = jax.tree.map(jnp.ones_like, params)
  updates, _ = tx.update(grads, tx.init(params), params)
  assert [float(updates["encoder"]["embeddings"]["w"][0]), float(updates["encoder"]["layer_0"]["w"][0]),
          float(updates["head"]["w"][0])] == [-0.25, -0.5, -1.0]  # fmt: skip


def test_the_recipe_hooks_give_adam_without_bias_correction_and_layer_decay():
  config = load_config(CONFIG, "task=polarity,size=tiny", {})
  assert finetune.RECIPE.scale_by(config) is not None  # glue.py: bias_correction=False
  config.optimizer.bias_correction = True
  assert finetune.RECIPE.scale_by(config) is None  # optax's own Adam
  multipliers = finetune.RECIPE.lr_multipliers(config, ENCODER)(_classifier_params())
  assert float(multipliers["encoder"]["layer_2"]["output"]["kernel"]) == pytest.approx(0.8)
  config.finetune.layerwise_lr_decay = 1.0
  assert finetune.RECIPE.lr_multipliers(config, ENCODER) is None


@pytest.mark.parametrize(
  "overrides,message",
  [
    ({"finetune.layerwise_lr_decay": 0.0}, "finetune.layerwise_lr_decay: must be in (0, 1], got 0.0"),
    ({"finetune.layerwise_lr_decay": 1.5}, "finetune.layerwise_lr_decay: must be in (0, 1], got 1.5"),
    ({"finetune.layerwise_lr_decay": float("nan")}, "finetune.layerwise_lr_decay: must be a finite number"),
    ({"task.name": "sst3"}, "task.name: unknown value 'sst3' (allowed: cola, sst2, mrpc"),  # the shared checks run
  ],
)
def test_config_errors_are_one_line(overrides, message):
  config = load_config(CONFIG, "task=sst2,size=tiny", overrides)
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


def test_discriminator_export_round_trip_and_finetuning_init(tmp_path):
  from core.data import corpora

  disc = ENCODER.replace(vocab_size=30522, hidden_size=32, num_heads=4, num_layers=2, intermediate_size=64,
                        embedding_size=16, max_position_embeddings=64)  # fmt: skip
  init_electra = jax.jit(model_lib.init_params, static_argnums=(1, 2, 3))
  params = jax.tree.map(np.asarray, init_electra(jax.random.key(1), disc, model_lib.generator_config(disc, 0.25), 8))
  encoder = model_lib.discriminator_encoder_params(params)
  export_fn = export.make_export_fn(disc, "electra", str(corpora.bert_vocab_path()))
  export_fn(params, 3, str(tmp_path))
  export_fn(jax.tree.map(lambda x: x + 1.0, params), 5, str(tmp_path))  # a later checkpoint (numpy adds)

  config, loaded = pretrained.load_encoder(tmp_path, step=3)
  assert config == disc and (tmp_path / "export" / "step_3" / "vocab.txt").is_file()
  jax.tree.map(np.testing.assert_array_equal, loaded, encoder)  # generator and RTD head discarded, nothing else
  ids, types = jnp.array([[101, 2023, 2003, 102]]), jnp.zeros((1, 4), jnp.int32)
  forward = jax.jit(lambda c, p: bert_lib.BertEncoder(c).apply({"params": p}, ids, types), static_argnums=0)
  np.testing.assert_array_equal(forward(config, loaded), forward(disc, encoder))

  # --config.init_checkpoint=WORKDIR: the latest export unless init_checkpoint_step names one.
  base = {"train.progress": False, "task.train_size": 8, "task.dev_size": 8, "init_checkpoint": str(tmp_path)}
  for step, expected in ((0, jax.tree.map(lambda x: x + 1.0, encoder)), (3, encoder)):
    run = load_config(CONFIG, "task=polarity,size=tiny", {**base, "init_checkpoint_step": step})
    finetune.validate(run)
    prep = runner.prepare(run, str(tmp_path / "ft"))
    assert (prep.encoder_config.hidden_size, prep.encoder_config.num_heads) == (32, 4)
    jax.tree.map(np.testing.assert_array_equal, prep.encoder_params, expected)
  # The training run starts from exactly that encoder (+ a fresh head).
  task = runner.make_task(run, prep, seed=0, recipe=finetune.RECIPE)
  init = jax.jit(train_lib.init_state(task, optax.identity(), seed=0))(task.initial_params).params
  jax.tree.map(np.testing.assert_array_equal, init["encoder"], encoder)
  assert set(init) == {"encoder", "head"} and set(task.initial_params) == {"encoder"}
  run = load_config(CONFIG, "task=polarity,size=tiny", {**base, "init_checkpoint_step": 4})
  with pytest.raises(config_lib.ConfigError, match=r"init_checkpoint: .*export: no step 4 \(have \[3, 5\]\)"):
    finetune.validate(run)
