"""BERT masked-LM pretraining on the bundled Wikipedia excerpt: the reference job for the shared training loop.

Devlin et al. 2018 §3.1 (Task #1, 15% of tokens, 80/10/10 corruption). The encoder is `core.bert`, optionally
initialised from the bundled MiniLM-L6 checkpoint; the MLM head is tied to the word embeddings. ELECTRA's MLM
baseline and REALM's pretraining reuse `core.mlm`; this entry point exists so the loop, checkpoints and sharding
are exercised end to end on real text.

  python -m core.pretrain_mlm --config=configs/core/bert_mlm.py:tiny --workdir=/tmp/mlm
"""

from __future__ import annotations

import functools
import os

import jax
import jax.numpy as jnp
import ml_collections

from core import bert as bert_lib
from core import bert_import, mlm, pretraining
from core import config as config_lib
from core import main as main_lib
from core import train as train_lib

CORPORA = ("wikipedia", "lee")
INIT_FROM = ("", "minilm")


def validate(config: ml_collections.ConfigDict) -> None:
  """One-line ConfigErrors before any data is read or any directory is written."""
  train_lib.validate(config)
  model = pretraining.model_config(config)
  pretraining.validate_data(config, CORPORA, model.max_position_embeddings)
  pretraining.validate_masking(config, "mlm")
  init_from = config_lib.get(config, "init_from")
  if not isinstance(init_from, str) or not (init_from in INIT_FROM or os.path.isdir(os.path.expanduser(init_from))):
    raise config_lib.ConfigError(
      f"init_from: {init_from!r} is neither a HuggingFace checkpoint directory nor one of "
      f"{', '.join(repr(x) for x in INIT_FROM)}"
    )


def make_task(config: ml_collections.ConfigDict) -> train_lib.Task:
  from core.data import corpora, pipeline, tokenizers

  tokenizer = tokenizers.WordPieceTokenizer(config.data.vocab_path or corpora.bert_vocab_path())
  model_config = pretraining.model_config(config)
  if model_config.vocab_size != tokenizer.vocab_size:
    raise config_lib.ConfigError(
      f"model.vocab_size: {model_config.vocab_size} != the tokenizer's {tokenizer.vocab_size} entries"
    )
  model = bert_lib.BertForMlm(model_config)
  train_docs, eval_docs = pretraining.split_documents(
    pretraining.bundled_texts(config.data.corpus), tokenizer, config.data, shuffle_seed=None
  )
  seq_len, batch_size = config.data.seq_len, config.train.batch_size
  specials = (tokenizer.cls_id, tokenizer.sep_id, tokenizer.mask_id, tokenizer.pad_id)
  rows = dict(cls_id=tokenizer.cls_id, sep_id=tokenizer.sep_id, pad_id=tokenizer.pad_id)
  corrupt = functools.partial(
    mlm.mask_tokens,
    mask_prob=config.mlm.mask_prob,
    mask_id=tokenizer.mask_id,
    vocab_size=model_config.vocab_size,
    special_ids=specials,
    mask_token_fraction=config.mlm.mask_token_fraction,
    random_token_fraction=config.mlm.random_token_fraction,
  )

  def init_params(key):
    dummy = jnp.zeros((1, seq_len), jnp.int32)
    params = model.init(key, dummy)["params"]
    if config.init_from:
      path = corpora.minilm_dir() if config.init_from == "minilm" else config.init_from
      loaded_config, encoder_params = bert_import.load_hf_bert(path)
      if loaded_config.hidden_size != model_config.hidden_size or loaded_config.num_layers != model_config.num_layers:
        raise config_lib.ConfigError(
          f"init_from: checkpoint has hidden {loaded_config.hidden_size} x "
          f"{loaded_config.num_layers} layers, model has {model_config.hidden_size} x "
          f"{model_config.num_layers}"
        )
      params = {**params, "encoder": jax.tree.map(jnp.asarray, encoder_params)}
    return params

  def mlm_metrics(params, batch, key, deterministic):
    corrupt_key, dropout_key = jax.random.split(key)
    masked_BxL, is_masked_BxL = corrupt(corrupt_key, batch["input_ids"], batch["attention_mask"])
    logits_BxLxV = model.apply(
      {"params": params},
      masked_BxL,
      batch["token_type_ids"],
      batch["attention_mask"],
      deterministic=deterministic,
      rngs={"dropout": dropout_key},
    )
    loss, accuracy = mlm.mlm_loss(logits_BxLxV, batch["input_ids"], is_masked_BxL)
    return loss, {"mlm_accuracy": accuracy}

  def loss_fn(params, batch, key):
    return mlm_metrics(params, batch, key, deterministic=False)

  def train_data(shard_index, shard_count):
    return pipeline.host_lm_dataset(
      train_docs, seq_len, batch_size, config.seed, shard_index, shard_count, config.data.shard_by, **rows
    )

  evaluate = pretraining.make_eval_fn(
    mlm_metrics,
    pretraining.held_out_batches(eval_docs, seq_len, batch_size, config.train.eval_batches, **rows),
  )

  def eval_fn(params, step):
    del step
    summary = evaluate(params)
    return {"mlm_loss": summary["loss"], "mlm_accuracy": summary["mlm_accuracy"]}

  return train_lib.Task(init_params=init_params, loss_fn=loss_fn, train_data=train_data, eval_fn=eval_fn)


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str) -> train_lib.TrainResult:
  validate(config)
  return train_lib.train(config, workdir, make_task(config))


if __name__ == "__main__":
  main_lib.run_main(train_and_evaluate, validate, "configs/core/bert_mlm.py")
