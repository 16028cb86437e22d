"""core.pretrained: one loader for BERT-family directories, exports and orbax checkpoints; one-line errors.

A 2-step run of the real training loop (checkpoint and export at each step) provides every format at once.
"""

import dataclasses
import json

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from core import bert as bert_lib
from core import bert_import, pretrained
from core import checkpoint as checkpoint_lib
from core import config as config_lib
from core import train as train_lib

ENCODER = bert_lib.BertConfig(
  vocab_size=40, hidden_size=16, num_layers=2, num_heads=4, intermediate_size=32, embedding_size=8,
  max_position_embeddings=16,
)  # fmt: skip


def _assert_trees_equal(a, b):
  assert jax.tree.structure(a) == jax.tree.structure(b)
  jax.tree.map(np.testing.assert_array_equal, a, b)


@pytest.fixture(scope="module")
def run(tmp_path_factory):
  """A 2-step MLM-like run ({'encoder', 'mlm_head'}) through core.train: checkpoints 1, 2 and exports 1, 2."""
  workdir = tmp_path_factory.mktemp("run")
  config = config_lib.default_config()
  config.model = ml_collections.ConfigDict(dataclasses.asdict(ENCODER))
  config.train.update(total_steps=2, checkpoint_every=1, keep_checkpoints=2, batch_size=2, progress=False,
                      async_checkpoints=False, log_every=1)  # fmt: skip
  config.optimizer.update(name="sgd", peak_lr=0.1, schedule="constant", weight_decay=0.0)
  encoder = bert_lib.BertEncoder(ENCODER)
  ids = np.arange(2 * 6, dtype=np.int32).reshape(2, 6) % 40
  exported = {}

  def init_params(key):
    return {"encoder": encoder.init(key, jnp.zeros((1, 6), jnp.int32))["params"], "mlm_head": {"bias": jnp.zeros(3)}}

  def loss_fn(params, batch, key):
    del key
    hidden = encoder.apply({"params": params["encoder"]}, batch["input_ids"])
    return jnp.mean(jnp.square(hidden)) + jnp.sum(params["mlm_head"]["bias"] ** 2), {}

  def export_fn(params, step, path):
    exported[step] = jax.tree.map(np.asarray, params["encoder"])
    pretrained.export_encoder(path, step, ENCODER, params["encoder"])

  def train_data(shard_index, shard_count):
    from core.data import pipeline

    return pipeline.classification_dataset({"input_ids": ids}, np.zeros(2, np.int32), 2, seed=0, num_epochs=None)

  task = train_lib.Task(init_params, loss_fn, train_data, export_fn=export_fn)
  train_lib.train(config, str(workdir), task)
  return workdir, exported


def test_the_loop_exports_and_saves_what_the_loader_needs(run):
  workdir, exported = run
  assert sorted(exported) == [1, 2] and pretrained.exported_steps(workdir) == [1, 2]
  assert pretrained.checkpoint_steps(workdir) == [1, 2]
  assert json.loads((workdir / "config.json").read_text())["model"]["num_heads"] == 4  # saved by core.train
  assert pretrained.resolve(workdir) == ("bert", workdir / "export" / "step_2")  # exports come first
  config, params = pretrained.load_encoder(workdir, step=1)
  assert config == ENCODER
  _assert_trees_equal(params, exported[1])
  assert not np.array_equal(exported[1]["layer_0"]["output"]["kernel"], exported[2]["layer_0"]["output"]["kernel"])


def test_export_round_trip_matches_the_orbax_checkpoint_and_the_forward_pass(run, tmp_path):
  workdir, exported = run
  orbax_config, orbax_params = pretrained.load_encoder(workdir / "checkpoints" / "2")  # one checkpoints/<N> dir
  export_config, export_params = pretrained.load_encoder(workdir, dtype="bfloat16")  # latest export: step 2
  assert orbax_config == ENCODER and export_config == ENCODER.replace(dtype="bfloat16")
  _assert_trees_equal(orbax_params, exported[2])
  _assert_trees_equal(export_params, exported[2])
  ids = jnp.array([[1, 5, 9, 2]])
  forward = jax.jit(lambda params: bert_lib.BertEncoder(ENCODER).apply({"params": params}, ids))
  np.testing.assert_array_equal(forward(export_params), forward(exported[2]))
  # The export is a plain HF BERT-family directory: core.bert_import reads it, HF names inside.
  config, params = bert_import.load_hf_bert(pretrained.export_path(workdir, 1))
  assert config == ENCODER
  _assert_trees_equal(jax.tree.map(np.asarray, params), exported[1])


def _one_line(path, message, **kwargs):
  with pytest.raises(config_lib.ConfigError) as info:
    pretrained.load_encoder(path, **kwargs)
  assert message in str(info.value) and "\n" not in str(info.value), str(info.value)


def test_bad_paths_give_one_line_errors(run, tmp_path):
  workdir, _ = run
  _one_line(tmp_path / "nope", "no such file or directory (allowed: a BERT-family directory")
  _one_line("", "no such file or directory")
  _one_line(tmp_path, "holds none of a BERT-family directory")
  _one_line(workdir, "export: no step 7 (have [1, 2])", step=7)
  _one_line(workdir / "checkpoints" / "1", "is step 1, not step 2", step=2)
  _one_line(pretrained.export_path(workdir, 1), "a single BERT-family directory has no step 1", step=1)

  # Orbax workdirs (no exports): missing config.json, params without 'encoder', sizes that disagree.
  copy = tmp_path / "copy"
  (copy / "checkpoints").mkdir(parents=True)
  (copy / "checkpoints" / "1").symlink_to(workdir / "checkpoints" / "1", target_is_directory=True)
  _one_line(copy, "no config.json with the run's model sizes")
  saved = json.loads((workdir / "config.json").read_text())
  (copy / "config.json").write_text(json.dumps({**saved, "model": {**saved["model"], "hidden_size": 24}}))
  _one_line(copy, "params/encoder: embeddings_project/bias has shape (16,), the model expects (24,)")
  (copy / "config.json").write_text(json.dumps({**saved, "model": {**saved["model"], "num_heads": 5}}))
  _one_line(copy, "config.json: no usable BertConfig in its 'model' section")
  (copy / "config.json").write_text("{")
  _one_line(copy, "config.json: not valid JSON")

  state = train_lib.TrainState(jnp.zeros((), jnp.int32), {"discriminator": {"w": jnp.ones(2)}}, {"mu": jnp.ones(2)},
                               jax.random.key_data(jax.random.key(0)))  # fmt: skip
  checkpointer = checkpoint_lib.Checkpointer(str(tmp_path / "electra"), async_save=False)
  checkpointer.save(3, state)
  checkpointer.close()
  (tmp_path / "electra" / "config.json").write_text(json.dumps(saved))
  _one_line(tmp_path / "electra", "params hold no 'encoder' subtree (top-level: ['discriminator'])")

  broken = tmp_path / "broken"
  broken.mkdir()
  (broken / "model.safetensors").write_bytes(b"not safetensors")
  (broken / "config.json").write_text(json.dumps(bert_import.hf_config_dict(ENCODER)))
  _one_line(broken, "broken: not loadable: ")
