"""lora_jax.finetune: the entry point on the shared runner; only adapters and head train, the base stays bitwise
frozen and has no optimizer state, the trained adapters merge into the base, and bad `lora` fields fail early."""

import json
import os
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import lora_jax
from core import config as config_lib
from core import train as train_lib
from core import tree as tree_lib
from core.finetune import runner
from lora_jax import checkpoint as lora_checkpoint
from lora_jax import finetune
from tests.helpers import REPO, load_config, run_module

CONFIG = os.path.join(REPO, "configs/lora/cpu.py")
TINY = {
  "init_checkpoint": "", "model.hidden_size": 16, "model.num_layers": 2, "model.num_heads": 2,
  "model.intermediate_size": 32, "model.max_position_embeddings": 32, "task.max_seq_length": 16,
  "task.train_size": 64, "task.dev_size": 32, "train.batch_size": 16, "train.progress": False,
  "finetune.eval_batch_size": 32,
}  # fmt: skip


def _config(arg: str, **overrides):
  return load_config(CONFIG, arg, {**TINY, **overrides})


def test_lora_trains_only_adapters_and_head_and_the_adapters_merge(tmp_path):
  config = _config("task=negation,method=lora,rank=2,seeds=1,epochs=2", **{"optimizer.peak_lr": 1e-2})
  finetune.validate(config)
  prep = runner.prepare(config, str(tmp_path), finetune.RECIPE)
  run = runner.seed_config(config, prep, 0)
  task = runner.make_task(run, prep, 0, finetune.RECIPE)
  result = train_lib.train(run, str(tmp_path / "seed_0"), task)

  assert set(result.state.params) == {"lora", "head"} and set(result.frozen) == {"encoder"}
  start = jax.jit(train_lib.init_frozen(task, run.seed))(task.initial_params)
  jax.tree.map(np.testing.assert_array_equal, result.frozen, start)  # the base: bitwise unchanged
  adapters = lora_jax.adapters(result.state.params["lora"])
  assert sorted(adapters) == [f"encoder/layer_{i}/attention/{p}/kernel" for i in range(2) for p in ("query", "value")]
  assert all(float(jnp.abs(b).max()) > 0 for _, b in adapters.values())  # B left zero: the adapters trained
  n_trainable = sum(x.size for x in jax.tree.leaves(result.state.params))
  moments = [x for x in jax.tree.leaves(result.state.opt_state) if np.ndim(x) > 0]
  assert sum(x.size for x in moments) == 2 * n_trainable  # Adam's mu and nu for the trainable leaves only

  # Merged into the base, the plain model computes what the factored one does (Hu et al. §4.2: no extra latency).
  spec = finetune.make_spec(config)
  merged = lora_jax.merge(result.frozen, result.state.params["lora"], spec)
  ids = jnp.asarray(prep.dev_features.inputs["input_ids"][:8])
  types, mask = jnp.zeros_like(ids), (ids > 0).astype(jnp.int32)
  factored = prep.model.apply({"params": result.params}, ids, types, mask)
  plain = prep.model.model.apply({"params": {**merged, "head": result.state.params["head"]}}, ids, types, mask)
  np.testing.assert_allclose(plain, factored, atol=1e-5)
  # The adapter-only export beside the checkpoint: adapters + head, restorable onto the base.
  exported, spec_back, extra, meta = lora_checkpoint.load(finetune.latest_adapter(tmp_path / "seed_0"))
  assert spec_back == spec and meta["adapter_params"] == lora_jax.count(result.state.params["lora"])
  jax.tree.map(np.testing.assert_array_equal, exported, jax.device_get(result.state.params["lora"]))
  jax.tree.map(np.testing.assert_array_equal, extra["head"], jax.device_get(result.state.params["head"]))
  counts = runner.parameter_counts(task)
  assert counts["trainable"] == n_trainable and counts["trainable_fraction"] < 0.2
  head = sum(x.size for x in jax.tree.leaves(result.state.params["head"]))
  assert counts["trainable_by_group"] == {"lora": lora_jax.count(result.state.params["lora"]), "head": head}


@pytest.mark.parametrize(
  "arg, trainable",
  [("method=full", None), ("method=head", ("head/.*",)), ("method=lora", ("lora/.*", "head/.*"))],
)
def test_methods_choose_what_trains(arg, trainable):
  assert finetune.trainable_patterns(_config(arg)) == trainable


def test_lora_plus_scales_only_b_updates():
  """LoRA+: with lr_ratio 16 an SGD step moves lora_b 16 times as far as lora_a and the head for one gradient."""
  from core import optim

  config = _config("method=lora", **{"lora.lr_ratio": 16.0})
  params = {"lora": {"encoder/layer_0/attention/query/kernel": {"lora_a": jnp.zeros(3), "lora_b": jnp.zeros(2)}},
            "head": {"dense": {"kernel": jnp.zeros(4)}}}  # fmt: skip
  config.optimizer.update(dict(name="sgd", b1=0.0, peak_lr=0.5, schedule="constant", warmup_steps=0, clip_norm=0.0,
                               weight_decay=0.0))  # fmt: skip
  tx, _ = optim.make_optimizer(config.optimizer, 10, lr_multipliers=finetune._lr_multipliers(config, None))
  updates, _ = tx.update(jax.tree.map(jnp.ones_like, params), tx.init(params), params)
  moved = {name: float(-u.mean()) for name, u in tree_lib.named_leaves(updates)}
  assert moved == {"head/dense/kernel": 0.5, "lora/encoder/layer_0/attention/query/kernel/lora_a": 0.5,
                   "lora/encoder/layer_0/attention/query/kernel/lora_b": 8.0}  # fmt: skip
  for arg, ratio in (("method=lora", 1.0), ("method=full", 16.0)):  # plain LoRA and full finetuning: no factors
    assert finetune._lr_multipliers(_config(arg, **{"lora.lr_ratio": ratio}), None) is None


@pytest.mark.parametrize(
  "overrides, message",
  [
    ({"lora.method": "adapter"}, r"lora.method: unknown value 'adapter' \(allowed: lora, head, full\)"),
    ({"lora.rank": 0}, r"lora.rank"),
    ({"lora.targets": "(query"}, r"lora.targets: '\(query' is not a regex"),
    ({"lora.dropout": 1.0}, r"lora.dropout"),
    ({"lora.targets": r"encoder/nothing/kernel"}, r"lora.targets: LoRA targets .* match no kernel or embedding"),
    ({"lora.extra_trainable": "head/.*,nope"}, r"lora.extra_trainable: 'nope' matches no parameter"),
    ({"lora.lr_ratio": 0.0}, r"lora.lr_ratio"),
    ({"finetune.classifier": "linear", "lora.extra_trainable": "head/dense/.*"},  # the linear head has no dense
     r"lora.extra_trainable: 'head/dense/\.\*' matches no parameter"),
  ],
)
def test_bad_lora_fields_fail_before_any_work(tmp_path, overrides, message):
  config = _config("task=negation", **overrides)
  with pytest.raises((config_lib.ConfigError, ValueError), match=message):
    finetune.validate(config)
  assert not os.path.exists(tmp_path / "seed_0")


def test_entry_point_end_to_end(tmp_path):
  workdir = tmp_path / "run"
  overrides = [f"--config.{k}={v}" for k, v in TINY.items()]
  run_module([sys.executable, "-m", "lora_jax.finetune", f"--config={CONFIG}:task=negation,seeds=1,epochs=1",
              f"--workdir={workdir}", *overrides])  # fmt: skip
  results = json.loads((workdir / "results.json").read_text())
  assert results["task"] == "negation" and len(results["scores"]) == 1
  assert 0 < results["parameters"]["trainable"] < results["parameters"]["total"]
