"""LoRA finetuning of a pretrained encoder on the shared runner (`core.finetune.runner`): frozen base, trained adapters.

Hu et al. 2021 (arXiv 2106.09685) §4.1–4.2 and §5.1: the pretrained weights W₀ stay frozen; each targeted kernel
gets a trainable low-rank update ΔW = s·A·B (s = α/r), B = 0 at the start so training starts at the pretrained model;
only the adapters and the new task head train. Paper GLUE setting (§5.1, Appendix D, Table 9): query and value
projections, r = 8, α = 16, AdamW, linear schedule with 6% warmup (values: configs/lora/glue.py).
Patent US 2022/0383126, claim 1: (1) obtain each targeted layer's base weight W₀ -> the pretrained encoder
(`core.pretrained.load_encoder` via the runner) and the spec's targets; (2) add a trainable low-rank factorisation,
f(x) = W₀x + BAx -> `LoraModel.init` (`lora_jax.init`) and `LoraModel.apply` (`lora_jax.apply`); (3) train on the
domain data without changing W₀ -> `Task.trainable` (`_adapt_task`): gradients and optimizer state for 'lora/...' and
the head only, the base a frozen jit argument (tests/lora_jax/test_finetune.py checks it is bitwise unchanged).

`lora.method` picks what trains, for the paper's comparison on one runner:
  lora      adapters on `lora.targets` + the head (base frozen);
  head      the head only (base frozen, no adapters: the linear-probe floor);
  full      every parameter (ordinary finetuning).

  python -m lora_jax.finetune --config=configs/lora/cpu.py:task=word_order --workdir=W
  python -m lora_jax.finetune --config=configs/lora/glue.py:sst2 --config.init_checkpoint=ROBERTA_DIR --workdir=W
"""

from __future__ import annotations

import dataclasses
import functools
import os
import re
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections

from core import bert as bert_lib
from core import config as config_lib
from core import tree as tree_lib
from core import main as main_lib
from core.finetune import heads, runner
from core.train import Task
import lora_jax
from lora_jax import checkpoint as checkpoint_lib
from lora_jax.spec import LoraSpec

LORA = "lora"  # the top-level params entry holding the adapters
METHODS = ("lora", "head", "full")
_KEY = jax.ShapeDtypeStruct((), jax.random.key(0).dtype)
TARGETS = {  # presets over `core.bert` param paths (regexes also accepted)
  "query_value": r"encoder/layer_\d+/attention/(query|value)/kernel",  # the paper's Wq, Wv (§4.2, Table 5)
  "attention": r"encoder/layer_\d+/attention/(query|key|value|out)/kernel",
  "all_linear": r"encoder/layer_\d+/(attention/(query|key|value|out)|intermediate|output)/kernel",  # QLoRA's choice
}


class LoraModel:
  """A Linen model with LoRA adapters, usable wherever the model's `init` / `apply` are (its code untouched).

  init(rngs, *args) -> {'params': {**base params, 'lora': adapters}}; apply({'params': ...}, *args) splits them and
  runs `lora_jax.apply`. Other attributes (e.g. `task_type`) are the wrapped model's. LoRA dropout draws from the
  'dropout' stream (folded), so callers need not know about it.
  """

  def __init__(self, model: Any, spec: LoraSpec):
    self.model, self.spec = model, spec

  def __getattr__(self, name: str) -> Any:
    if name in ("model", "spec"):  # not set yet (e.g. during unpickling): no recursion
      raise AttributeError(name)
    return getattr(self.model, name)

  def init(self, rngs: Any, *args: Any, **kwargs: Any) -> dict[str, Any]:
    variables = dict(self.model.init(rngs, *args, **kwargs))
    key = rngs["params"] if isinstance(rngs, dict) else rngs
    params = variables["params"]
    variables["params"] = {**params, LORA: lora_jax.init(jax.random.fold_in(key, 1), params, self.spec)}
    return variables

  def apply(self, variables: Any, *args: Any, rngs: Any = None, deterministic: bool = True, **kwargs: Any) -> Any:
    params = dict(variables["params"])
    lora_params = params.pop(LORA)
    if not deterministic and self.spec.dropout > 0:
      rngs = {**rngs, "lora_dropout": jax.random.fold_in(rngs["dropout"], 1)}
    return lora_jax.apply(
      self.model, params, lora_params, self.spec, *args, rngs=rngs, deterministic=deterministic, **kwargs
    )


def make_spec(config: ml_collections.ConfigDict) -> LoraSpec:
  c = config.lora
  targets = TARGETS.get(c.targets, c.targets)
  return LoraSpec(targets, rank=c.rank, alpha=c.alpha, rslora=c.rslora, dropout=c.dropout, init=c.init)


def trainable_patterns(config: ml_collections.ConfigDict) -> tuple[str, ...] | None:
  """Regexes of the params that train (None = all, for `full`)."""
  extra = tuple(p for p in config.lora.extra_trainable.split(",") if p)
  if config.lora.method == "full":
    return None
  return ((f"{LORA}/.*",) if config.lora.method == "lora" else ()) + ("head/.*",) + extra


def validate_recipe(config: ml_collections.ConfigDict) -> None:
  """LoRA's own fields, one line each, before any data is read."""
  config_lib.check_choice(config, "lora.method", METHODS)
  config_lib.check_int(config, "lora.rank", minimum=1)
  config_lib.check_positive(config, "lora.alpha")
  config_lib.check_interval(config, "lora.dropout", "[0, 1)")
  config_lib.check_bool(config, "lora.rslora")
  config_lib.check_choice(config, "lora.init", ("kaiming", "gaussian"))
  config_lib.check_positive(config, "lora.lr_ratio")
  for name in ("targets", "extra_trainable"):
    pattern = TARGETS.get(config.lora[name], config.lora[name])
    for part in pattern.split(",") if name == "extra_trainable" else [pattern]:
      try:
        re.compile(part)
      except re.error as e:
        raise config_lib.ConfigError(
          f"lora.{name}: {part!r} is not a regex ({e}); presets: {', '.join(TARGETS)}"
        ) from None
  # Patterns must name parameters of the model: checked on the shapes of a one-layer twin (nothing is initialised).
  # (table sizes shrunk: they change no path, and LoRA ranks are checked against the real widths)
  twin = bert_lib.from_model_section(config.model).replace(
    num_layers=1, vocab_size=8, max_position_embeddings=8, type_vocab_size=1
  )
  model = heads.FinetuneModel(twin, "classification", classifier=config.finetune.classifier)
  dummy = jax.ShapeDtypeStruct((1, 8), jnp.int32)
  params = jax.eval_shape(lambda k, x: model.init(k, x)["params"], _KEY, dummy)
  names = [name for name, _ in tree_lib.named_leaves(params)]
  for part in filter(None, config.lora.extra_trainable.split(",")):
    if not any(re.fullmatch(part, name) for name in names):
      raise config_lib.ConfigError(
        f"lora.extra_trainable: {part!r} matches no parameter (paths look like {names[0]}, ..., {names[-1]})"
      )
  if config.lora.method == "lora":
    try:
      jax.eval_shape(lambda k: lora_jax.init(k, params, make_spec(config)), _KEY)
    except ValueError as e:
      raise config_lib.ConfigError(f"lora.targets: {str(e).splitlines()[0]}") from None


def _lr_multipliers(config: ml_collections.ConfigDict, encoder_config: Any):
  """LoRA+ (Hayou et al. 2024, arXiv 2402.12354 §3): B, which starts at zero, trains `lora.lr_ratio` times faster than
  A (efficient feature learning at width); every other trainable leaf (A, the head) at the schedule's rate."""
  del encoder_config
  ratio = float(config.lora.lr_ratio)
  if config.lora.method != "lora" or ratio == 1.0:
    return None
  return lambda params: tree_lib.map_with_path_str(lambda name, _: ratio if name.endswith("/lora_b") else 1.0, params)


def _wrap_model(model: Any, config: ml_collections.ConfigDict) -> Any:
  return LoraModel(model, make_spec(config)) if config.lora.method == "lora" else model


def adapter_dir(seed_workdir: str | os.PathLike, step: int) -> Path:
  """Where a LoRA run's adapter-only export of `step` goes: SEED_WORKDIR/adapter/step_<N>/."""
  return Path(seed_workdir) / "adapter" / f"step_{step}"


def latest_adapter(seed_workdir: str | os.PathLike) -> Path:
  steps = sorted(int(p.name.removeprefix("step_")) for p in (Path(seed_workdir) / "adapter").glob("step_*"))
  if not steps:
    raise FileNotFoundError(f"no adapter export under {Path(seed_workdir) / 'adapter'} (a finished lora run has one)")
  return adapter_dir(seed_workdir, steps[-1])


def _export_adapter(config: ml_collections.ConfigDict):
  """Task.export_fn: after each checkpoint, the adapters + head alone (`lora_jax.checkpoint.save`, §4.2: what a task
  costs to store), beside the run's own checkpoint; the base is named by `init_checkpoint`."""
  spec = make_spec(config)

  def export(params: Any, step: int, workdir: str) -> None:
    directory = adapter_dir(workdir, step)
    if directory.exists():  # a resumed run re-saving a step it had exported: keep the first
      return
    checkpoint_lib.save(directory, params[LORA], spec, extra={"head": params["head"]}, base=config.init_checkpoint)

  return export


def _adapt_task(task: Task, config: ml_collections.ConfigDict, prep: runner.Prepared) -> Task:
  del prep
  export = _export_adapter(config) if config.lora.method == "lora" else task.export_fn
  return dataclasses.replace(task, trainable=trainable_patterns(config), export_fn=export)


RECIPE = runner.Recipe(
  validate=validate_recipe, lr_multipliers=_lr_multipliers, wrap_model=_wrap_model, adapt_task=_adapt_task
)


def validate(config: ml_collections.ConfigDict) -> None:
  runner.validate(config, RECIPE)


def run_task(config: ml_collections.ConfigDict, workdir: str) -> dict[str, Any]:
  """Finetunes `finetune.seeds` seeds with `lora.method`; returns (and writes) WORKDIR/results.json (its
  'parameters' entry: trainable vs all parameters)."""
  return runner.run_task(config, workdir, RECIPE)


if __name__ == "__main__":
  main_lib.run_main(functools.partial(runner.train_and_evaluate, recipe=RECIPE), validate, "configs/lora/cpu.py")
