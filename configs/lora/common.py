"""Shared LoRA finetuning config: the runner's sections (`core.finetune.runner`) + the `lora` section.

The `lora` section (read by `lora_jax.finetune`):
  method      lora | head | full   (adapters + head | head only | every parameter)
  targets     query_value | attention | all_linear (presets over core.bert paths) or a regex
  rank, alpha r and α; scaling s = α/r (α/√r with rslora)
  dropout     on the low-rank branch's input only
  init        kaiming (loralib) | gaussian (peft)
  extra_trainable  comma-separated regexes that also train (the head always does)
  lr_ratio    LoRA+ (arXiv 2402.12354): B trains at lr_ratio × the learning rate (1 = plain LoRA; LoRA+ uses 16)
"""

import ml_collections

from core import config as config_lib


def encoder(hidden: int, layers: int, heads: int, intermediate: int, **overrides) -> dict:
  """`config.model` fields (those of `core.bert.BertConfig`); a pretrained init_checkpoint brings its own shape."""
  fields = dict(
    vocab_size=30522, max_position_embeddings=512, type_vocab_size=2, hidden_dropout_rate=0.1,
    attention_dropout_rate=0.1, layer_norm_eps=1e-12, initializer_range=0.02, dtype="float32", embedding_size=0,
  )  # fmt: skip
  fields.update(hidden_size=hidden, num_layers=layers, num_heads=heads, intermediate_size=intermediate, **overrides)
  return fields


def base_config(
  *, task: str, init_checkpoint: str, model: dict, max_seq_length: int, epochs: float, seeds: int, batch_size: int,
  peak_lr: float, weight_decay: float, warmup_fraction: float, method: str = "lora", targets: str = "query_value",
  rank: int = 8, alpha: float = 16.0,
) -> ml_collections.ConfigDict:
  config = config_lib.default_config()
  config.model = ml_collections.ConfigDict(model)
  config.init_checkpoint = init_checkpoint
  config.init_checkpoint_step = 0
  config.task = ml_collections.ConfigDict(
    dict(
      name=task,
      data_dir="",  # GLUE TSV dir / generated-data dir; '' = tfds (GLUE) or bundled / generated
      tfds_dir="",
      vocab_path="",  # '' = the init checkpoint's vocab.txt, else the bundled BERT uncased vocab
      max_seq_length=max_seq_length,
      max_query_length=64,
      max_answer_length=30,
      label_tokens="first",
      split_seed=0,
      train_size=0,
      dev_size=0,
    )
  )
  config.finetune = ml_collections.ConfigDict(
    dict(
      epochs=float(epochs),
      seeds=seeds,
      warmup_fraction=warmup_fraction,
      head_dropout_rate=0.1,
      classifier="mlp",  # dense(H) → GELU → dense(K) on [CLS]; 'linear': dense(K) alone (H·K + K parameters)
      eval_batch_size=128,
      double_unordered=False,
    )
  )
  config.lora = ml_collections.ConfigDict(
    dict(
      method=method,
      targets=targets,
      rank=rank,
      alpha=float(alpha),
      rslora=False,
      dropout=0.0,
      init="kaiming",
      extra_trainable="",
      lr_ratio=1.0,  # LoRA+ (Hayou et al. 2024): lora_b's learning rate / lora_a's (1 = the paper's LoRA)
    )
  )
  config.train.update(
    dict(batch_size=batch_size, total_steps=1, log_every=50, eval_every=0, checkpoint_every=1000, keep_checkpoints=1)
  )
  config.optimizer.update(
    dict(
      name="adamw",
      peak_lr=peak_lr,
      schedule="warmup_times_linear",
      warmup_steps=0,  # replaced by warmup_fraction x total steps at run time
      weight_decay=weight_decay,
      b1=0.9,
      b2=0.999,
      eps=1e-6,
      clip_norm=1.0,
    )
  )
  return config
