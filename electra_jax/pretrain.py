"""ELECTRA pretraining (replaced-token detection) and its compute-matched MLM twin, on the shared training loop.

Clark et al. 2020 §2 (objective), §3.1–3.2 (tied embeddings, small generator), §3.4 / Table 1 (BERT baseline matched
on compute), Appendix A (hyperparameters). Patent US 2021/0089724 claim 1: one call of `loss_fn` is one training
iteration, steps 1–6 (see `objective.electra_loss`); the generator is trained jointly on its MLM loss.

  python -m electra_jax.pretrain --config=configs/electra/tiny.py --workdir=/tmp/electra
  python -m electra_jax.pretrain --config=configs/electra/tiny.py:mlm=true --workdir=/tmp/electra_mlm
  python -m electra_jax.pretrain --config=configs/electra/small.py --workdir=gs://bucket/electra_small \
      --config.data.corpus=tfds:wikipedia/20230601.en --config.data.tfds_dir=gs://bucket/tfds

Data: the bundled Wikipedia articles + Lee corpus (or full Wikipedia / OpenWebText via `core.data.paper_dataset`),
WordPiece with the BERT uncased vocab, packed into '[CLS] ... [SEP]' rows by `core.data.pipeline.lm_dataset`; checks,
bundled documents and the held-out evaluation are `core.pretraining`'s, shared with `core.pretrain_mlm`. The run
logs its pretraining FLOPs (`electra_jax.flops`): `pretrain_flops_per_step` in the train metrics, cumulative
`pretrain_flops` in the eval metrics, and both in `<workdir>/flops.json`. At every checkpoint the finetuning
encoder (discriminator, or the twin's) is exported to `<workdir>/export/step_<N>/` (`electra_jax.export`). Resumes
from `--workdir`.
"""

from __future__ import annotations

import functools
import json
import os

import jax
import ml_collections
import numpy as np

from core import bert as bert_lib
from core import config as config_lib
from core import main as main_lib
from core import mlm as core_mlm
from core import pretraining
from core import train as train_lib
from electra_jax import export as export_lib
from electra_jax import flops as flops_lib
from electra_jax import model as model_lib
from electra_jax import objective as objective_lib
from electra_jax import optim as optim_lib

OBJECTIVES = ("electra", "mlm")
BUNDLED_CORPORA = ("bundled", "wikipedia", "lee")
TFDS_CORPORA = {
  "tfds:wikipedia/20230601.en": "wikipedia",
  "tfds:wikipedia": "wikipedia",
  "tfds:openwebtext": "openwebtext",  # c4/webtextlike: the paper's Small-OWT corpus as tfds has it
}


def model_configs(config: ml_collections.ConfigDict) -> tuple[bert_lib.BertConfig, bert_lib.BertConfig | None]:
  """(discriminator / MLM-model config, generator config or None for the MLM objective)."""
  disc = pretraining.model_config(config)
  if config.objective.name != "electra":
    return disc, None
  return disc, model_lib.generator_config(disc, config.objective.generator_hidden_fraction)


def max_predictions(config: ml_collections.ConfigDict) -> int:
  n = config.masking.max_predictions_per_seq
  return n if n else core_mlm.max_predictions(config.masking.mask_prob, config.data.seq_len)


def validate(config: ml_collections.ConfigDict) -> None:
  """One-line ConfigErrors before any data is read or any directory is written."""
  train_lib.validate(config)
  config_lib.check_choice(config, "objective.name", OBJECTIVES)
  config_lib.check_interval(config, "objective.generator_hidden_fraction", "(0, 1]")
  config_lib.check_positive(config, "objective.temperature")
  config_lib.check_positive(config, "objective.gen_weight", allow_zero=True)
  config_lib.check_positive(config, "objective.disc_weight", allow_zero=True)
  config_lib.check_bool(config, "objective.disallow_correct")
  config_lib.check_bool(config, "objective.disc_on_masked_only")
  disc = pretraining.model_config(config)
  fraction = config.objective.generator_hidden_fraction
  try:
    model_lib.generator_config(disc, fraction)
  except ValueError as e:
    raise config_lib.ConfigError(
      f"objective.generator_hidden_fraction: {fraction!r} gives a bad generator: {e}"
    ) from None
  pretraining.validate_masking(config, "masking")
  config_lib.check_int(config, "masking.max_predictions_per_seq", minimum=0)
  pretraining.validate_data(config, BUNDLED_CORPORA + tuple(TFDS_CORPORA), disc.max_position_embeddings)
  if max_predictions(config) < 1 or max_predictions(config) > config.data.seq_len:
    raise config_lib.ConfigError(
      f"masking.max_predictions_per_seq: {max_predictions(config)} must be in [1, data.seq_len {config.data.seq_len}]"
    )
  config_lib.check_range(config, "flops.output_frac", 0.0, 1.0, inclusive=True)
  config_lib.check_positive(config, "flops.backward_factor", allow_zero=True)
  config_lib.check_bool(config, "optimizer.bias_correction")


def _tfds_documents(config: ml_collections.ConfigDict, tokenizer):
  """A paper-scale corpus via core.data.paper_dataset (prepared array_record, no download), tokenized as it is
  read: (train, eval) lazy datasets, the first `eval_fraction` of the (tfds-shuffled) articles held out."""
  from core import data as data_lib
  from core.data import pipeline

  try:
    source = data_lib.paper_dataset(TFDS_CORPORA[config.data.corpus], "train", data_dir=config.data.tfds_dir or None)
  except (FileNotFoundError, RuntimeError, ImportError, ValueError) as e:
    raise config_lib.ConfigError(f"data.corpus: {config.data.corpus!r} is not available here: {e}") from None
  n = min(len(source), config.data.max_documents or len(source))
  if n < 2:
    raise config_lib.ConfigError(f"data.max_documents: {n} documents; need >= 2 (train + eval)")
  n_eval = max(1, round(n * config.data.eval_fraction))
  docs = pipeline.lazy_documents(source, lambda record: tokenizer.encode_documents([record["text"]])[0])
  return docs[n_eval:n], docs[:n_eval]


def load_documents(config: ml_collections.ConfigDict, tokenizer):
  """Tokenized (train, eval) documents. Bundled corpora: a fixed shuffle, the last `eval_fraction` held out, all
  tokenized up front (seconds); tfds corpora stream (`_tfds_documents`)."""
  if config.data.corpus in TFDS_CORPORA:
    return _tfds_documents(config, tokenizer)
  return pretraining.split_documents(
    pretraining.bundled_texts(config.data.corpus), tokenizer, config.data, shuffle_seed=0
  )


def flops_per_step(config: ml_collections.ConfigDict) -> float:
  """Pretraining FLOPs of one step of this run (`electra_jax.flops`, the reference's counting)."""
  disc, gen = model_configs(config)
  return flops_lib.pretrain_flops_per_step(
    config.objective.name,
    disc,
    config.train.batch_size,
    config.data.seq_len,
    gen,
    output_frac=config.flops.output_frac,
    backward_factor=config.flops.backward_factor,
  )


def make_loss(config: ml_collections.ConfigDict, special_ids, mask_id: int):
  """loss(params, batch, key, deterministic) -> (loss, metrics) for the configured objective."""
  disc, gen = model_configs(config)
  mask_fn = functools.partial(
    objective_lib.mask_inputs,
    mask_prob=config.masking.mask_prob,
    mask_id=mask_id,
    vocab_size=disc.vocab_size,
    special_ids=tuple(special_ids),
    mask_token_fraction=config.masking.mask_token_fraction,
    random_token_fraction=config.masking.random_token_fraction,
    max_predictions_per_seq=max_predictions(config),
  )
  if config.objective.name == "mlm":

    def mlm_logits(params, ids, types, attention, positions, **kw):
      return model_lib.mlm_logits(params, disc, ids, types, attention, positions, **kw)

    return functools.partial(objective_lib.mlm_baseline_loss, logits_fn=mlm_logits, mask_fn=mask_fn)

  def gen_logits(params, ids, types, attention, positions, **kw):
    return model_lib.generator_logits(params, gen, ids, types, attention, positions, **kw)

  def disc_logits(params, ids, types, attention, **kw):
    return model_lib.discriminator_logits(params, disc, ids, types, attention, **kw)

  obj = config.objective
  return functools.partial(
    objective_lib.electra_loss,
    gen_logits_fn=gen_logits,
    disc_logits_fn=disc_logits,
    mask_fn=mask_fn,
    gen_weight=obj.gen_weight,
    disc_weight=obj.disc_weight,
    temperature=obj.temperature,
    disallow_correct=obj.disallow_correct,
    disc_on_masked_only=obj.disc_on_masked_only,
  )


def make_init(config: ml_collections.ConfigDict):
  disc, gen = model_configs(config)
  seq_len = config.data.seq_len
  if gen is None:
    return lambda key: model_lib.init_mlm_params(key, disc, seq_len)
  return lambda key: model_lib.init_params(key, disc, gen, seq_len)


def make_task(config: ml_collections.ConfigDict) -> train_lib.Task:
  from core.data import corpora, pipeline, tokenizers

  tokenizer = tokenizers.WordPieceTokenizer(config.data.vocab_path or corpora.bert_vocab_path())
  if config.model.vocab_size != tokenizer.vocab_size:
    raise config_lib.ConfigError(
      f"model.vocab_size: {config.model.vocab_size} != the tokenizer's {tokenizer.vocab_size} entries"
    )
  specials = (tokenizer.cls_id, tokenizer.sep_id, tokenizer.mask_id, tokenizer.pad_id)
  loss = make_loss(config, specials, tokenizer.mask_id)
  train_docs, eval_docs = load_documents(config, tokenizer)
  seq_len, batch_size = config.data.seq_len, config.train.batch_size
  rows = dict(cls_id=tokenizer.cls_id, sep_id=tokenizer.sep_id, pad_id=tokenizer.pad_id)
  per_step = flops_per_step(config)

  def loss_fn(params, batch, key):
    value, metrics = loss(params, batch, key, deterministic=False)
    return value, {**metrics, "pretrain_flops_per_step": np.float32(per_step)}

  def train_data(shard_index, shard_count):
    return pipeline.host_lm_dataset(
      train_docs, seq_len, batch_size, config.seed, shard_index, shard_count, config.data.shard_by, **rows
    )

  evaluate = pretraining.make_eval_fn(
    loss, pretraining.held_out_batches(eval_docs, seq_len, batch_size, config.train.eval_batches, **rows)
  )

  def eval_fn(params, step):
    """Held-out metrics (fixed masks and samples per batch, no dropout) + the FLOPs spent so far."""
    return {"pretrain_flops": per_step * step, "pretrain_flops_per_step": per_step, **evaluate(params)}

  opt = config.optimizer
  scale_by = None if opt.bias_correction else optim_lib.scale_by_adam_no_bias_correction(opt.b1, opt.b2, opt.eps)
  vocab = config.data.vocab_path or str(corpora.bert_vocab_path())
  export_fn = export_lib.make_export_fn(model_configs(config)[0], config.objective.name, vocab)
  return train_lib.Task(
    init_params=make_init(config), loss_fn=loss_fn, train_data=train_data, eval_fn=eval_fn, scale_by=scale_by,
    export_fn=export_fn,
  )


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str) -> train_lib.TrainResult:
  validate(config)
  config_lib.check_workdir(workdir)
  per_step = flops_per_step(config)
  total = per_step * config.train.total_steps
  record = {"objective": config.objective.name, "pretrain_flops_per_step": per_step, "pretrain_flops_total": total}
  if jax.process_index() == 0:
    with open(os.path.join(workdir, "flops.json"), "w") as f:
      json.dump(record, f, indent=2)
    with open(os.path.join(workdir, "config.json"), "w") as f:  # sizes for the finetuning hand-off
      json.dump(config.to_dict(), f, indent=2)
    print(f"{config.objective.name}: {per_step:.4g} pretraining FLOPs per step, {total:.4g} for the run", flush=True)
  return train_lib.train(config, workdir, make_task(config))


if __name__ == "__main__":
  main_lib.run_main(train_and_evaluate, validate, "configs/electra/tiny.py")
