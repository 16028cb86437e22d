"""core.train / optim / checkpoint on a least-squares task whose answers are known in closed form."""

import dataclasses
import json
import os
import shutil

import grain
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from core import checkpoint as checkpoint_lib
from core import config as config_lib
from core import metrics as metrics_lib
from core import optim
from core import train as train_lib
from core import tree as tree_lib

D = 8


def _data(n=256, seed=0):
  rng = np.random.default_rng(seed)
  x = rng.normal(size=(n, D)).astype(np.float32)
  w_true = np.arange(1, D + 1, dtype=np.float32) / D
  y = x @ w_true + 0.01 * rng.normal(size=n).astype(np.float32)
  return x, y, w_true


def _task(batch_size, n=256):
  x, y, _ = _data(n)

  def train_data(shard_index, shard_count):
    ds = grain.MapDataset.source([{"x": x[i], "y": y[i]} for i in range(n)])
    ds = ds[shard_index::shard_count].shuffle(seed=3).repeat(None)
    return ds.batch(batch_size // shard_count, drop_remainder=True).to_iter_dataset()

  def loss_fn(params, batch, key):
    noise = 0.0 * jax.random.normal(key, ())  # uses the key, contributes nothing
    pred = batch["x"] @ params["w"] + params["b"] + noise
    loss = jnp.mean((pred - batch["y"]) ** 2)
    return loss, {"mse": loss}

  return train_lib.Task(
    init_params=lambda key: {"w": jnp.zeros(D), "b": jnp.zeros(())}, loss_fn=loss_fn, train_data=train_data
  )


def _config(**train):
  config = config_lib.default_config()
  config.train.update(
    dict(batch_size=16, total_steps=30, log_every=5, checkpoint_every=10, progress=False, async_checkpoints=False)
  )
  config.train.update(train)
  config.optimizer.update(dict(name="adam", peak_lr=0.05, schedule="constant", weight_decay=0.0))
  return config


@pytest.fixture(scope="module")
def full_run(tmp_path_factory):
  """300 uninterrupted steps, shared by the fit, resume and wrong-model checks (one compile for three tests)."""
  workdir = tmp_path_factory.mktemp("full")
  return workdir, train_lib.train(_config(total_steps=300, checkpoint_every=100), str(workdir), _task(16))


def test_training_fits_least_squares(full_run):
  workdir, result = full_run
  _, _, w_true = _data()
  np.testing.assert_allclose(np.asarray(result.state.params["w"]), w_true, atol=0.02)
  records = metrics_lib.read_jsonl(str(workdir), "train")
  assert records[0]["loss"] > 10 * records[-1]["loss"]
  assert os.path.isdir(workdir / "tensorboard")


def test_resume_continues_bitwise(full_run, tmp_path):
  _, full = full_run
  train_lib.train(_config(total_steps=20), str(tmp_path), _task(16))
  resumed = train_lib.train(_config(total_steps=300, checkpoint_every=100), str(tmp_path), _task(16))
  assert resumed.resumed_from == 20
  for a, b in zip(jax.tree.leaves(full.state.params), jax.tree.leaves(resumed.state.params)):
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


def test_grad_accumulation_matches_full_batch(tmp_path):
  # Equal-size micro-batches: the mean of micro-batch mean gradients is the full-batch mean gradient.
  one = train_lib.train(_config(total_steps=5, grad_accum_steps=1), str(tmp_path / "a"), _task(16))
  four = train_lib.train(_config(total_steps=5, grad_accum_steps=4), str(tmp_path / "b"), _task(16))
  for a, b in zip(jax.tree.leaves(one.state.params), jax.tree.leaves(four.state.params)):
    np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-5, atol=1e-6)


def test_nan_guard_stops_and_keeps_last_good_checkpoint(tmp_path):
  config = _config(total_steps=30, inject_nan_at_step=15)
  with pytest.raises(train_lib.NonFiniteLossError, match=r"at step 15; .*Last good checkpoint: step 10"):
    train_lib.train(config, str(tmp_path), _task(16))
  ckpt = checkpoint_lib.Checkpointer(str(tmp_path))
  assert ckpt.all_steps() == [10]
  abstract = jax.eval_shape(train_lib.init_state(_task(16), optim.make_optimizer(config.optimizer, 30)[0], 0))
  restored = ckpt.restore(abstract)
  assert int(restored.step) == 10 and np.all(np.isfinite(np.asarray(restored.params["w"])))


def test_checkpoint_of_other_model_is_refused(full_run, tmp_path):
  shutil.copytree(full_run[0], tmp_path / "run")
  other = train_lib.Task(
    init_params=lambda key: {"w": jnp.zeros(D + 1), "b": jnp.zeros(())},
    loss_fn=_task(16).loss_fn,
    train_data=_task(16).train_data,
  )
  with pytest.raises(checkpoint_lib.CheckpointError, match=r"params/w has shape \(8,\), the model expects \(9,\)"):
    train_lib.train(_config(total_steps=400), str(tmp_path / "run"), other)


@pytest.mark.parametrize("schedule", config_lib.SCHEDULES)
def test_schedules_against_formulas(schedule):
  opt = config_lib.default_optimizer()
  opt.update(dict(peak_lr=2.0, schedule=schedule, warmup_steps=10, end_lr_fraction=0.0))
  total = 100
  fn = optim.make_schedule(opt, total)
  for t in (0, 5, 10, 40, 99):
    warm = min(1.0, t / 10)
    expected = {
      "constant": 2.0 * warm,
      "warmup_linear": 2.0 * warm if t < 10 else 2.0 * (1 - (t - 10) / 90),
      "warmup_cosine": 2.0 * warm if t < 10 else 2.0 * 0.5 * (1 + np.cos(np.pi * (t - 10) / 90)),
      "warmup_times_linear": 2.0 * warm * (1 - t / total),
    }[schedule]
    np.testing.assert_allclose(float(fn(t)), expected, rtol=1e-5, atol=1e-6)


def test_weight_decay_mask_skips_layernorm_and_bias():
  params = {
    "layer_0": {
      "attention": {"query": {"kernel": jnp.ones((4, 4)), "bias": jnp.ones(4)}},
      "LayerNorm_0": {"scale": jnp.ones(4), "bias": jnp.ones(4)},
    },
    "embeddings": {
      "word_embeddings": {"embedding": jnp.ones((10, 4))},
      "LayerNorm": {"scale": jnp.ones(4), "bias": jnp.ones(4)},
    },
  }
  mask = optim.decay_mask(params)
  assert mask["layer_0"]["attention"]["query"] == {"kernel": True, "bias": False}
  assert mask["layer_0"]["LayerNorm_0"] == {"scale": False, "bias": False}
  assert mask["embeddings"]["word_embeddings"]["embedding"] is True
  assert mask["embeddings"]["LayerNorm"] == {"scale": False, "bias": False}


def test_adamw_factory_matches_optax_adamw():
  opt = config_lib.default_optimizer()
  opt.update(
    dict(name="adamw", peak_lr=0.1, schedule="constant", warmup_steps=0, clip_norm=0.0, weight_decay=0.01, eps=1e-6)
  )
  tx, _ = optim.make_optimizer(opt, 10)
  ref = optax.adamw(0.1, b1=0.9, b2=0.999, eps=1e-6, weight_decay=0.01, mask=optim.decay_mask)
  params = {"dense": {"kernel": jnp.ones((3, 2)), "bias": jnp.ones(2)}}
  grads = jax.tree.map(lambda p: 0.5 * p, params)
  s1, s2 = tx.init(params), ref.init(params)
  for _ in range(3):
    u1, s1 = tx.update(grads, s1, params)
    u2, s2 = ref.update(grads, s2, params)
    for a, b in zip(jax.tree.leaves(u1), jax.tree.leaves(u2)):
      np.testing.assert_allclose(a, b, rtol=1e-6)


def test_global_norm_clipping_bounds_the_update_direction():
  opt = config_lib.default_optimizer()
  opt.update(dict(name="sgd", b1=0.5, peak_lr=1.0, schedule="constant", clip_norm=1.0, weight_decay=0.0))
  tx, _ = optim.make_optimizer(opt, 10)
  params = {"w": jnp.zeros(4)}
  updates, _ = tx.update({"w": jnp.full(4, 10.0)}, tx.init(params), params)
  np.testing.assert_allclose(float(optax.tree.norm(updates)), 1.0, rtol=1e-6)


def test_metrics_jsonl_roundtrip(tmp_path):
  writer = metrics_lib.MetricWriter(str(tmp_path), tensorboard=False, enabled=True)
  writer.write(3, {"loss": np.float32(1.5), "acc": 0.25})
  writer.write(4, {"loss": float("nan")}, split="eval")
  writer.close()
  lines = (tmp_path / "metrics.jsonl").read_text().splitlines()
  assert json.loads(lines[0]) == {"step": 3, "split": "train", "loss": 1.5, "acc": 0.25}
  assert metrics_lib.read_jsonl(str(tmp_path), "eval") == [{"step": 4, "split": "eval", "loss": "nan"}]


def test_parse_arg_types_and_errors():
  arg = config_lib.parse_arg("tiny,steps=5,bf16=true", size="base", steps=10, bf16=False)
  assert (arg.size, arg.steps, arg.bf16) == ("tiny", 5, True)
  with pytest.raises(config_lib.ConfigError, match="unknown key 'layers'"):
    config_lib.parse_arg("layers=3", size="base")


def test_lr_multipliers_scale_each_leaf():
  opt = config_lib.default_optimizer()
  opt.update(dict(name="sgd", b1=0.0, peak_lr=1.0, schedule="constant", clip_norm=0.0, weight_decay=0.0))
  tx, _ = optim.make_optimizer(opt, 10, lr_multipliers=lambda p: {"a": 1.0, "b": 0.25})
  params = {"a": jnp.zeros(2), "b": jnp.zeros(2)}
  updates, _ = tx.update({"a": jnp.ones(2), "b": jnp.ones(2)}, tx.init(params), params)
  np.testing.assert_allclose(updates["a"], -1.0)
  np.testing.assert_allclose(updates["b"], -0.25)


def test_scheduled_lr_multipliers_hold_a_leaf_then_release_it():
  opt = config_lib.default_optimizer()
  opt.update(dict(name="sgd", b1=0.0, peak_lr=1.0, schedule="constant", clip_norm=0.0, weight_decay=0.0))
  delayed = lambda step: jnp.where(step < 2, 0.0, 0.5)  # 0 for two steps, then half
  tx, _ = optim.make_optimizer(opt, 10, lr_multipliers=lambda p: {"a": 1.0, "b": delayed})
  params = {"a": jnp.zeros(2), "b": jnp.zeros(2)}
  state, seen = tx.init(params), []
  for _ in range(4):
    updates, state = jax.jit(tx.update)({"a": jnp.ones(2), "b": jnp.ones(2)}, state, params)
    seen.append((float(updates["a"][0]), float(updates["b"][0])))
  assert seen == [(-1.0, 0.0), (-1.0, 0.0), (-1.0, -0.5), (-1.0, -0.5)]


def test_initial_params_replace_the_fresh_init_and_are_jit_arguments(tmp_path):
  w_start = np.linspace(-1.0, 1.0, D).astype(np.float32)
  task = dataclasses.replace(_task(16), initial_params={"w": w_start})
  tx = optim.make_optimizer(_config().optimizer, 30)[0]
  init = train_lib.init_state(task, tx, 0)
  state = jax.jit(init)(task.initial_params)
  np.testing.assert_array_equal(np.asarray(state.params["w"]), w_start)
  assert float(state.params["b"]) == 0.0  # not in initial_params: the fresh init
  # An argument, not a constant: the lowered program has no literal holding the weights.
  assert "0.714285" not in jax.jit(init).lower(task.initial_params).as_text()
  # Training starts from them: one Adam step (lr 0.05) stays within 0.1 of w_start, which is far from zeros.
  result = train_lib.train(_config(total_steps=1, checkpoint_every=1), str(tmp_path), task)
  assert np.abs(np.asarray(result.state.params["w"]) - w_start).max() < 0.1
  bad = dataclasses.replace(_task(16), initial_params={"encoder": w_start})
  with pytest.raises(ValueError, match=r"initial_params: unknown top-level names \['encoder'\]"):
    jax.eval_shape(train_lib.init_state(bad, tx, 0), bad.initial_params)


def test_trainable_split_freezes_the_rest_without_optimizer_state_or_checkpoint(tmp_path):
  """Task.trainable: only 'w' trains. The frozen 'b' (set from initial_params) is bitwise unchanged, the optimizer
  state holds moments for 'w' alone, the checkpoint holds no 'b', and a resumed run ends bitwise where one
  uninterrupted run ends (the frozen part is rebuilt from initial_params)."""
  task = dataclasses.replace(_task(16), initial_params={"b": jnp.asarray(0.3)}, trainable=("w",))
  config = _config(total_steps=4, checkpoint_every=2)
  config.optimizer.clip_norm = 1.0
  straight = train_lib.train(config, str(tmp_path / "straight"), task)
  assert float(straight.params["b"]) == np.float32(0.3) and set(straight.state.params) == {"w"}
  assert np.abs(np.asarray(straight.params["w"])).max() > 0.1  # it trained
  moments = [x for x in jax.tree.leaves(straight.state.opt_state) if np.ndim(x) > 0]
  assert moments and all(x.shape == (D,) for x in moments)  # Adam mu/nu for 'w' only; nothing shaped like 'b'
  saved = checkpoint_lib.Checkpointer(str(tmp_path / "straight"), async_save=False).state_metadata(4)
  saved_names = [name for name, _ in tree_lib.named_leaves(saved, is_leaf=lambda x: hasattr(x, "shape"))]
  assert "params/w" in saved_names and not any(name.endswith("/b") or "/b/" in name for name in saved_names)

  # The gradient norm (and so clipping) counts only the trainable leaves: 'w' alone, as jax.grad gives it.
  batch = {k: jnp.asarray(v) for k, v in next(iter(task.train_data(0, 1))).items()}
  step = train_lib.make_train_step(task.loss_fn, optax.sgd(0.0), lambda _: 0.0)
  init = train_lib.init_state(task, optax.sgd(0.0), 0)
  state, frozen = init(task.initial_params), train_lib.init_frozen(task, 0)(task.initial_params)
  _, metrics = step(state, batch, frozen)
  full = {"w": state.params["w"], "b": frozen["b"]}
  grad_w = jax.grad(lambda p: task.loss_fn(p, batch, jax.random.key(0))[0])(full)["w"]
  np.testing.assert_allclose(float(metrics["grad_norm"]), float(jnp.linalg.norm(grad_w)), rtol=1e-6)

  train_lib.train(_config(total_steps=2, checkpoint_every=2), str(tmp_path / "resumed"), task)
  resumed = train_lib.train(config, str(tmp_path / "resumed"), task)
  assert resumed.resumed_from == 2
  np.testing.assert_array_equal(np.asarray(resumed.params["w"]), np.asarray(straight.params["w"]))
  with pytest.raises(ValueError, match=r"Task.trainable: \['nothing'\] matches no parameter"):
    dataclasses.replace(task, trainable=("nothing",)).split({"w": jnp.zeros(D)})



class _SnapshotHook(train_lib.HostHook):
  """Every 4 steps keeps a copy of w; the data pipeline reads it (a stand-in for REALM's refreshed index)."""

  name = "snapshot"

  def __init__(self):
    self.w = np.zeros(D, np.float32)
    self.taken_at = np.full((), -1, np.int32)
    self.seen_by_batch = []

  def before_step(self, step, params):
    if step % 4 == 0:
      self.w = np.array(jax.device_get(params()["w"]))
      self.taken_at = np.full((), step, np.int32)
    return {"snapshot_age": float(step - self.taken_at)}

  def state(self):
    return {"w": self.w, "taken_at": self.taken_at}

  def restore(self, tree):
    self.w, self.taken_at = np.asarray(tree["w"]), np.asarray(tree["taken_at"])

  def shift(self, batch):
    self.seen_by_batch.append(int(self.taken_at))
    return {**batch, "y": batch["y"] + np.float32(0.5) * self.w.sum()}


def _hooked_task(hook):
  task = _task(16)
  inner = task.train_data
  return dataclasses.replace(task, train_data=lambda i, n: inner(i, n).map(hook.shift), hooks=(hook,))


def test_host_hook_runs_before_each_batch_and_its_state_resumes_bitwise(tmp_path):
  full_hook = _SnapshotHook()
  full = train_lib.train(_config(total_steps=12, checkpoint_every=6, log_every=1), str(tmp_path / "a"), _hooked_task(full_hook))
  # The batch of step s saw the snapshot taken at the last multiple of 4 <= s: the hook ran first.
  assert full_hook.seen_by_batch == [s - s % 4 for s in range(12)]
  assert [h["snapshot_age"] for h in full.history] == [float(s % 4) for s in range(12)]

  train_lib.train(_config(total_steps=6, checkpoint_every=6), str(tmp_path / "b"), _hooked_task(_SnapshotHook()))
  resumed_hook = _SnapshotHook()
  resumed = train_lib.train(_config(total_steps=12, checkpoint_every=6), str(tmp_path / "b"), _hooked_task(resumed_hook))
  assert resumed.resumed_from == 6 and resumed_hook.seen_by_batch[0] == 4  # restored, not re-taken at step 6
  np.testing.assert_array_equal(np.asarray(resumed.params["w"]), np.asarray(full.params["w"]))
  np.testing.assert_array_equal(resumed_hook.w, full_hook.w)

  # Without its host state the resumed run would read a zero snapshot at steps 6-7 and end elsewhere.
  class Forgetful(_SnapshotHook):
    def restore(self, tree):
      pass

  shutil.copytree(tmp_path / "b" / "checkpoints" / "6", tmp_path / "c" / "checkpoints" / "6")
  forgot = train_lib.train(_config(total_steps=12, checkpoint_every=6), str(tmp_path / "c"), _hooked_task(Forgetful()))
  assert not np.array_equal(np.asarray(forgot.params["w"]), np.asarray(full.params["w"]))
