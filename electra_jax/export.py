"""ELECTRA's hand-off to finetuning: the discriminator encoder, exported as a BERT-family directory at every checkpoint.

Patent US 2021/0089724, last step ("after pretraining the generator is discarded and the encoder is finetuned");
paper §2 ("we throw out the generator and only fine-tune the discriminator on downstream tasks"). The shared
embeddings + the discriminator body form a core `BertEncoder` tree with the discriminator's config
(`model.discriminator_encoder_params`); the MLM twin's params hold one already (`encoder`). `core.pretrained`
writes it to WORKDIR/export/step_<N>/ (safetensors + config.json + the run's vocab.txt), where
`core.pretrained.load_encoder(WORKDIR, step=N)` and finetuning's `--config.init_checkpoint=WORKDIR` find it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from core import bert as bert_lib
from core import pretrained
from electra_jax import model as model_lib


def encoder_params(params: Any, objective: str) -> Any:
  """The encoder a finetuning run starts from: ELECTRA's discriminator (generator discarded) or the MLM model's."""
  return model_lib.discriminator_encoder_params(params) if objective == "electra" else params["encoder"]


def make_export_fn(config: bert_lib.BertConfig, objective: str, vocab_path: str) -> Callable[[Any, int, str], None]:
  """`core.train.Task.export_fn` for a pretraining run: params, step, workdir -> WORKDIR/export/step_<step>/."""

  def export(params: Any, step: int, workdir: str) -> None:
    pretrained.export_encoder(workdir, step, config, encoder_params(params, objective), vocab_path)

  return export
