"""ELECTRA's finetuning recipe on the shared runner (`core.finetune.runner`): its optimizer and layer-wise LR decay.

Patent US 2021/0089724 (ELECTRA), final step: "after pretraining the generator is discarded and the encoder is
finetuned (classification, QA with start/end vectors, NER, ...)". Paper §3.1 and Appendix A (Table 7): Adam with
learning rate 3e-4 / 1e-4 / 5e-5 (Small / Base / Large), batch 32, 10% linear warmup then linear decay, 3 epochs
(10 for RTE and STS-B), weight decay 0 on GLUE, layer-wise learning-rate decay 0.8 (0.9 for Large); reported GLUE
numbers are the median over 10 finetuning runs (values: configs/electra/glue.py). What is ELECTRA's here:
- the optimizer is the pretraining one (reference `AdamWeightDecayOptimizer`: Adam without bias correction,
  `electra_jax.optim`) unless `optimizer.bias_correction`;
- layer-wise LR decay (Appendix A; reference `model/optimization.py:_get_layer_lrs`): with n encoder layers, depth
  0 = embeddings (+ embeddings_project), depth i+1 = layer_i, and the task head on top, parameter lr =
  lr·d^(top−depth). As intended (maintainer, google-research/electra #51) the head is depth n+1 (top = n+1): head
  ×1, last layer ×d, ..., embeddings ×d^(n+1). The reference code puts the head at depth n+2 (a leftover of the
  removed pooler), so its last layer gets ×d² and embeddings ×d^(n+2); `finetune.layerwise_lr_decay_reference_bug`
  reproduces that.
`init_checkpoint` takes an ELECTRA pretraining workdir (its `export/step_<N>/` discriminator encoders, written by
`electra_jax.export`; `init_checkpoint_step` picks N, 0 = the latest), a BERT-family directory, 'minilm' or ''.

  python -m electra_jax.finetune --config=configs/electra/glue.py:sst2 --config.init_checkpoint=DIR --workdir=W

`run_task(config, workdir)` is the Python API (results.json's dict).
"""

from __future__ import annotations

import functools
import re
from typing import Any

import ml_collections

from core import bert as bert_lib
from core import config as config_lib
from core import main as main_lib
from core import tree as tree_lib
from core.finetune import runner
from electra_jax import optim as electra_optim

_DEPTH = re.compile(r"encoder/(?:(embeddings[^/]*)|layer_(\d+))(?:/.*)?")  # embeddings, embeddings_project: depth 0


def layerwise_lr_multipliers(params: Any, num_layers: int, decay: float, reference_bug: bool = False) -> Any:
  """Tree of d^(top − depth) shaped like `params` ({'encoder': ..., 'head': ...}); see the module docstring.

  depth: encoder/embeddings*, 0; encoder/layer_i, i + 1; the head (and anything outside 'encoder'), top.
  top = n + 1 (intended) or n + 2 (reference code, issue #51 / #64).
  """
  top = num_layers + (2 if reference_bug else 1)

  def multiplier(name: str, leaf: Any) -> float:
    del leaf
    match = _DEPTH.fullmatch(name)
    depth = top if match is None else 0 if match.group(1) else int(match.group(2)) + 1
    return float(decay ** (top - depth))

  return tree_lib.map_with_path_str(multiplier, params)


def validate_recipe(config: ml_collections.ConfigDict) -> None:
  """ELECTRA's own fields: layer-wise decay in (0, 1], its reference-bug switch, Adam's bias correction switch."""
  config_lib.check_interval(config, "finetune.layerwise_lr_decay", "(0, 1]")
  config_lib.check_bool(config, "finetune.layerwise_lr_decay_reference_bug")
  config_lib.check_bool(config, "optimizer.bias_correction")


def _scale_by(config: ml_collections.ConfigDict):
  opt = config.optimizer
  return None if opt.bias_correction else electra_optim.scale_by_adam_no_bias_correction(opt.b1, opt.b2, opt.eps)


def _lr_multipliers(config: ml_collections.ConfigDict, encoder: bert_lib.BertConfig):
  decay, bug = config.finetune.layerwise_lr_decay, config.finetune.layerwise_lr_decay_reference_bug
  if decay >= 1.0:
    return None
  return lambda params: layerwise_lr_multipliers(params, encoder.num_layers, decay, bug)


RECIPE = runner.Recipe(validate=validate_recipe, scale_by=_scale_by, lr_multipliers=_lr_multipliers)


def validate(config: ml_collections.ConfigDict) -> None:
  """One-line ConfigErrors (shared fields, then ELECTRA's) before any data is read or any directory is written."""
  runner.validate(config, RECIPE)


def run_task(config: ml_collections.ConfigDict, workdir: str) -> dict[str, Any]:
  """Finetunes `finetune.seeds` seeds with ELECTRA's recipe; returns (and writes) WORKDIR/results.json."""
  return runner.run_task(config, workdir, RECIPE)


if __name__ == "__main__":
  main_lib.run_main(functools.partial(runner.train_and_evaluate, recipe=RECIPE), validate, "configs/electra/glue.py")
