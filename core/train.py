"""The training loop every method uses: jitted step over a Mesh, orbax checkpoints, exact resume, NaN guard.

A method supplies a `Task` (how to init params, its loss, its data, optional eval) and a config with `train`,
`optimizer` and `mesh` sections (schema, defaults and checks: `core.config`); `train(config, workdir, task)` does
the rest:

  state = init or restore(workdir)                      # params, optimizer state, step, RNG, data position
  for step in [state.step, total_steps):
    hook.before_step(step, params)                      # host work between steps (Task.hooks), e.g. an index refresh
    batch  = next(data)                                 # this process's rows → one global, sharded array
    state, metrics = train_step(state, batch)           # jit over the mesh; key = fold_in(rng, step)
    stop if loss is not finite                          # the last good checkpoint stays untouched
    log every N, eval every M, checkpoint every K       # JSONL + TensorBoard, orbax keep-last

Randomness is a typed key folded with the step number, so a resumed run draws exactly the same numbers as an
uninterrupted one; with the data iterator and the hooks' host state restored too, the final params are bitwise equal.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import flax
import jax
import jax.numpy as jnp
import ml_collections
import optax
from tqdm import tqdm

from core import checkpoint as checkpoint_lib
from core import config as config_lib
from core import metrics as metrics_lib
from core import optim
from core import sharding as sharding_lib
from core import tree as tree_lib

LossFn = Callable[[Any, Mapping[str, jax.Array], jax.Array], tuple[jax.Array, dict[str, jax.Array]]]


class NonFiniteLossError(FloatingPointError):
  """Raised when the loss becomes NaN/Inf; the message names the step and the last good checkpoint."""


@flax.struct.dataclass
class TrainState:
  step: jax.Array  # int32 scalar: optimizer updates done
  params: Any
  opt_state: Any
  rng: jax.Array  # raw key data (uint32) of the run's base key; typed key = wrap_key_data(rng)


class HostHook:
  """Host-side work the loop runs between steps, for any method (REALM refreshes its document index with it).

  `before_step(step, params)` runs on every process before step `step`'s batch is drawn, so whatever it changes
  (an index the data pipeline reads) feeds that batch; `params()` returns all current params (the live training
  buffers, donated to the next step: copy what you keep, e.g. with `jax.device_get`). It may return host floats
  that are logged with that step's metrics. `state()` is a pytree of numpy arrays with fixed shapes (also before the
  first step) saved in every checkpoint as the `host` item; a resumed run calls `restore(tree)` with it before its
  first step, so the hook continues exactly where the killed run stopped.
  """

  name: str = "hook"

  def before_step(self, step: int, params: Callable[[], Any]) -> Mapping[str, float] | None:
    del step, params
    return None

  def state(self) -> Any:
    return {}

  def restore(self, tree: Any) -> None:
    del tree


@dataclasses.dataclass(frozen=True)
class Task:
  """What a method plugs into the loop.

  init_params(key) -> params; loss_fn(params, batch, key) -> (loss, metrics);
  train_data(shard_index, shard_count) -> grain IterDataset of local batches (dicts of numpy arrays);
  eval_fn(params, step) -> dict of host floats; sharding_rules: (regex over state paths, PartitionSpec) pairs,
  matched against full TrainState paths ('params/...', 'opt_state/...'), so start patterns with '.*' to shard the
  optimizer moments like their parameters. `config.mesh.rules` adds (regex, spec tuple) pairs from the config.
  export_fn(params, step, workdir): called on process 0 after each checkpoint save (e.g. an encoder written in a
  portable format beside the checkpoint, `core.pretrained.export_encoder`).
  trainable: regexes over param paths ('head/.*', '.*/lora_[ab]'); None = every leaf trains. The other leaves are
  frozen: the loss is differentiated only with respect to the trainable ones, so the frozen ones get no gradient,
  no optimizer state and no share of the clip norm, and they are not checkpointed (a resumed run rebuilds them
  from init_params / initial_params, which are deterministic). eval_fn and export_fn receive all params.
  hooks: `HostHook`s run before every step (host work between steps; their state is checkpointed).
  """

  init_params: Callable[[jax.Array], Any]
  loss_fn: LossFn
  train_data: Callable[[int, int], Any]
  eval_fn: Callable[[Any, int], Mapping[str, float]] | None = None
  sharding_rules: Sequence[tuple[str, Any]] = ()
  scale_by: optax.GradientTransformation | None = None
  lr_multipliers: Callable[[Any], Any] | None = None
  # {top-level param name: ready-made subtree} (e.g. a pretrained encoder) replacing that part of init_params' tree.
  # Passed to the jitted init as an argument, so large weights are not baked into the program as constants.
  initial_params: Mapping[str, Any] | None = None
  export_fn: Callable[[Any, int, str], None] | None = None
  trainable: Sequence[str] | None = None
  hooks: Sequence[HostHook] = ()

  def split(self, params: Any) -> tuple[Any, Any]:
    """params -> (trainable, frozen) nested dicts (`core.tree.partition`); frozen is {} when all train."""
    if self.trainable is None:
      return params, {}
    trainable, frozen = tree_lib.partition(params, self.trainable)
    if not trainable:
      names = [name for name, _ in tree_lib.named_leaves(params)][:5]
      raise ValueError(f"Task.trainable: {list(self.trainable)} matches no parameter (paths look like {names})")
    return trainable, frozen


def validate(config: ml_collections.ConfigDict) -> None:
  """One-line ConfigErrors for the sections `train` reads (`core.config.validate_loop`) and the device counts."""
  config_lib.validate_loop(config)
  n_devices = jax.device_count()
  data, model = config.mesh.data, config.mesh.model
  if n_devices % model:
    raise config_lib.ConfigError(f"mesh.model: {model} does not divide the {n_devices} devices")
  data = n_devices // model if data == -1 else data
  if data * model != n_devices:
    raise config_lib.ConfigError(f"mesh.data: {config.mesh.data} x mesh.model {model} != {n_devices} devices")
  micro = config.train.batch_size // config.train.grad_accum_steps
  if micro % data:
    raise config_lib.ConfigError(
      f"train.batch_size: {config.train.batch_size} (micro-batch {micro}) is not "
      f"divisible by the {data} data-parallel devices"
    )


def make_train_step(
  loss_fn: LossFn,
  tx: optax.GradientTransformation,
  schedule: optax.Schedule,
  *,
  grad_accum_steps: int = 1,
  inject_nan_at_step: int = -1,
):
  """(state, batch[, frozen]) -> state, metrics. Gradients are taken with respect to `state.params` only; `frozen`
  (params outside the optimizer, `Task.trainable`) is merged in for the loss. Gradients are averaged over
  `grad_accum_steps` micro-batches with a scan."""

  def trainable_loss(params, frozen, batch, key):
    return loss_fn(tree_lib.combine(params, frozen) if frozen else params, batch, key)

  grad_fn = jax.value_and_grad(trainable_loss, has_aux=True)

  def train_step(state: TrainState, batch: Mapping[str, jax.Array], frozen: Any = None):
    frozen = frozen or {}
    key = jax.random.fold_in(jax.random.wrap_key_data(state.rng), state.step)
    if grad_accum_steps == 1:
      (loss, aux), grads = grad_fn(state.params, frozen, batch, key)
    else:
      # Row r of the batch goes to micro-batch r % A: the leading (sharded) axis stays evenly split per device.
      micro = jax.tree.map(
        lambda x: jnp.swapaxes(x.reshape(x.shape[0] // grad_accum_steps, grad_accum_steps, *x.shape[1:]), 0, 1), batch
      )

      def accumulate(carry, inputs):
        index, micro_batch = inputs
        (loss_i, aux_i), grads_i = grad_fn(state.params, frozen, micro_batch, jax.random.fold_in(key, index))
        return jax.tree.map(jnp.add, carry, (loss_i, aux_i, grads_i)), None

      shapes = jax.eval_shape(grad_fn, state.params, frozen, jax.tree.map(lambda x: x[0], micro), key)
      (loss0, aux0), grads0 = jax.tree.map(lambda s: jnp.zeros(s.shape, s.dtype), shapes)
      (loss, aux, grads), _ = jax.lax.scan(accumulate, (loss0, aux0, grads0), (jnp.arange(grad_accum_steps), micro))
      loss, aux, grads = jax.tree.map(lambda x: x / grad_accum_steps, (loss, aux, grads))
    if inject_nan_at_step >= 0:  # test hook for the NaN guard
      loss = jnp.where(state.step + 1 == inject_nan_at_step, jnp.nan, loss)
    updates, opt_state = tx.update(grads, state.opt_state, state.params)
    params = optax.apply_updates(state.params, updates)
    metrics = {
      **aux,
      "loss": loss,
      "grad_norm": optax.tree.norm(grads),
      "learning_rate": jnp.asarray(schedule(state.step), jnp.float32),
    }
    return state.replace(step=state.step + 1, params=params, opt_state=opt_state), metrics

  return train_step


def init_params(task: Task, seed: int) -> Callable[..., Any]:
  """init(initial_params=None) -> the run's step-0 params (all of them, trainable and frozen)."""

  def init(initial_params: Mapping[str, Any] | None = None) -> Any:
    base_key = jax.random.key(seed)
    params = task.init_params(jax.random.fold_in(base_key, 0))
    if initial_params is not None:
      unknown = sorted(set(initial_params) - set(params))
      if unknown:
        raise ValueError(f"Task.initial_params: unknown top-level names {unknown}; params have {sorted(params)}")
      params = {**params, **initial_params}
    return params

  return init


def init_state(task: Task, tx: optax.GradientTransformation, seed: int) -> Callable[..., tuple[TrainState, Any]]:
  """init(initial_params=None) -> step-0 TrainState (trainable params only, `Task.trainable`); pass
  `task.initial_params` (as `train` does) to use them. `init_frozen` gives the frozen rest."""

  def init(initial_params: Mapping[str, Any] | None = None) -> TrainState:
    params, _ = task.split(init_params(task, seed)(initial_params))
    return TrainState(
      step=jnp.zeros((), jnp.int32),
      params=params,
      opt_state=tx.init(params),
      rng=jax.random.key_data(jax.random.fold_in(jax.random.key(seed), 1)),
    )

  return init


def init_frozen(task: Task, seed: int) -> Callable[..., Any]:
  """init(initial_params=None) -> the frozen params (not in TrainState, not checkpointed); {} when all train."""
  return lambda initial_params=None: task.split(init_params(task, seed)(initial_params))[1]


@dataclasses.dataclass
class TrainResult:
  state: TrainState  # state.params: the trainable params (all params unless Task.trainable is set)
  history: list[dict[str, float]]  # one dict per logged interval (train) and per eval
  resumed_from: int | None
  frozen: Any = dataclasses.field(default_factory=dict)

  @property
  def params(self) -> Any:
    """All params: the trained ones with the frozen ones merged back in."""
    return tree_lib.combine(self.state.params, self.frozen) if self.frozen else self.state.params


def train(config: ml_collections.ConfigDict, workdir: str, task: Task) -> TrainResult:
  """Runs (or resumes) training to `config.train.total_steps`. See the module docstring."""
  validate(config)
  config_lib.check_workdir(workdir)
  if jax.process_index() == 0:  # what the run is; `core.pretrained` reads its `model` section
    with open(os.path.join(workdir, "config.json"), "w") as f:
      json.dump(config.to_dict(), f, indent=2)
  tc = config.train
  mesh = sharding_lib.make_mesh(config.mesh.data, config.mesh.model)
  tx, schedule = optim.make_optimizer(
    config.optimizer, tc.total_steps, scale_by=task.scale_by, lr_multipliers=task.lr_multipliers
  )

  init = init_state(task, tx, config.seed)
  abstract_state = jax.eval_shape(init, task.initial_params)
  rules = tuple(task.sharding_rules) + tuple((pattern, jax.P(*spec)) for pattern, spec in config.mesh.rules)
  state_shardings = sharding_lib.param_shardings(abstract_state, mesh, rules)
  abstract_state = jax.tree.map(
    lambda a, s: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=s), abstract_state, state_shardings
  )
  # Frozen params are an argument of the step (not baked into the program), sharded by the same rules.
  frozen, frozen_shardings = {}, {}
  if task.trainable is not None:
    abstract_frozen = jax.eval_shape(init_frozen(task, config.seed), task.initial_params)
    frozen_shardings = sharding_lib.param_shardings({"params": abstract_frozen}, mesh, rules)["params"]
    frozen = jax.jit(init_frozen(task, config.seed), out_shardings=frozen_shardings)(task.initial_params)
  step_fn = jax.jit(
    make_train_step(
      task.loss_fn, tx, schedule, grad_accum_steps=tc.grad_accum_steps, inject_nan_at_step=tc.inject_nan_at_step
    ),
    in_shardings=(state_shardings, sharding_lib.batch_sharding(mesh), frozen_shardings),
    out_shardings=(state_shardings, sharding_lib.replicated(mesh)),
    donate_argnums=0,
  )

  def all_params(params):
    return tree_lib.combine(params, frozen) if frozen else params

  data_iterator = iter(task.train_data(jax.process_index(), jax.process_count()))
  checkpointer = checkpoint_lib.Checkpointer(workdir, max_to_keep=tc.keep_checkpoints, async_save=tc.async_checkpoints)
  resumed_from = checkpointer.latest_step
  names = [hook.name for hook in task.hooks]
  if len(set(names)) != len(names):
    raise ValueError(f"Task.hooks: names must be unique, got {names}")

  def host_state():
    return {hook.name: hook.state() for hook in task.hooks} if task.hooks else None

  if resumed_from is not None:
    state = checkpointer.restore(abstract_state, data_iterator)
    if task.hooks:
      saved = checkpointer.restore_host(host_state(), resumed_from)
      for hook in task.hooks:
        hook.restore(saved[hook.name])
  else:
    state = jax.jit(init, out_shardings=state_shardings)(task.initial_params)
  start = int(state.step)

  writer = metrics_lib.MetricWriter(workdir)
  history: list[dict[str, float]] = []
  window: list[dict[str, Any]] = []
  progress = tqdm(
    total=tc.total_steps,
    initial=start,
    disable=not tc.progress or jax.process_index() != 0,
    desc="train",
    dynamic_ncols=True,
  )
  started = time.perf_counter()
  try:
    for step in range(start, tc.total_steps):
      host_metrics: dict[str, float] = {}
      for hook in task.hooks:
        host_metrics.update(hook.before_step(step, lambda: all_params(state.params)) or {})
      batch = sharding_lib.shard_batch(next(data_iterator), mesh)
      state, metrics = step_fn(state, batch, frozen)
      metrics = {**jax.device_get(metrics), **host_metrics}
      if not math.isfinite(float(metrics["loss"])):
        checkpointer.wait()
        raise NonFiniteLossError(
          f"loss is {float(metrics['loss'])} at step {step + 1}; training stopped. Last good checkpoint: "
          f"step {checkpointer.latest_step} in {checkpointer.directory}"
        )
      window.append(metrics)
      done = step + 1
      progress.update(1)
      if done % tc.log_every == 0 or done == tc.total_steps:
        summary = metrics_lib.mean_metrics(window)
        summary["steps_per_second"] = len(window) / max(time.perf_counter() - started, 1e-9)
        writer.write(done, summary)
        history.append({"step": done, "split": "train", **summary})
        progress.set_postfix(loss=f"{summary['loss']:.4f}")
        window, started = [], time.perf_counter()
      if done % tc.checkpoint_every == 0 or done == tc.total_steps:
        checkpointer.save(done, state, data_iterator, host=host_state())
        if task.export_fn is not None and jax.process_index() == 0:
          task.export_fn(all_params(state.params), done, workdir)
      if task.eval_fn is not None and tc.eval_every and (done % tc.eval_every == 0 or done == tc.total_steps):
        eval_metrics = dict(task.eval_fn(all_params(state.params), done))
        writer.write(done, eval_metrics, split="eval")
        history.append({"step": done, "split": "eval", **eval_metrics})
  finally:
    progress.close()
    writer.close()
    checkpointer.close()
  return TrainResult(state=state, history=history, resumed_from=resumed_from, frozen=frozen)
