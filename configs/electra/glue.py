"""ELECTRA finetuning on GLUE / SQuAD (paper §3.1, Appendix A Table 7) and on the bundled offline tasks.

Command:
  python -m electra_jax.finetune --config=configs/electra/glue.py:sst2 --config.init_checkpoint=DIR --workdir=W
  python -m electra_jax.finetune --config=configs/electra/glue.py:task=rte,size=base --config.init_checkpoint=DIR \
      --config.task.data_dir=glue_data/RTE --workdir=W        # GLUE TSVs; without data_dir: tfds glue/rte
  python -m electra_jax.finetune --config=configs/electra/glue.py:task=polarity,size=tiny --workdir=W   # CPU, offline
Args (`:task=...,size=...` or a bare task): task = cola sst2 mrpc stsb qqp mnli qnli rte squad (paper data: GLUE TSV
  dir via task.data_dir, else tfds) | polarity newsgroups wordnet_pos negation word_order capital_qa wiki_links
  (bundled / generated, offline); size = small (default) | base | large | tiny (model shape for '' = random init;
  a pretrained init_checkpoint brings its own shape). init_checkpoint: pretraining workdir, HuggingFace dir, 'minilm'
  or ''.
Hyperparameters (Appendix A; per size: configs/electra/common.py FINETUNE): LR 3e-4 / 1e-4 / 5e-5 (small / base /
  large; tiny 3e-4: at 1e-3 it collapses to the majority class), batch 32, 10% warmup x linear decay, 3 epochs (10
  for RTE, STS-B; 2 for SQuAD), layer-wise LR decay 0.8 (0.9 large), weight decay 0,
  Adam without bias correction (reference AdamWeightDecayOptimizer), eps 1e-6, clip 1.0; MRPC / STS-B also train on
  swapped sentence order; seeds: 10 (paper, median) for GLUE, 3 for the bundled CPU tasks. Total steps =
  ceil(epochs x train examples / batch).
Expected (paper, GLUE dev, median of 10): ELECTRA-Small SST-2 89.1, GLUE avg 79.9; ELECTRA-Base GLUE 85.1; Large
  89.0 (400k) / 89.5 (1.75M); SQuAD 1.1 dev Base 84.5 EM / 90.8 F1. Released Small-OWT (README): CoLA 56.8, SST-2
  88.3, MNLI 78.9, RTE 68.5. Ours: see electra_jax/README.md (bundled tasks only; GLUE is not available offline).
Runtime (2 CPU cores, one seed, incl. start-up): size=tiny random init: polarity 19 s, newsgroups 23 s, negation
  36 s, capital_qa 56 s, wordnet_pos 108 s, wiki_links 111 s; init_checkpoint=minilm (6 x 384): polarity 106 s,
  negation 181 s, capital_qa 303 s. Ours (dev, one seed; tiny measured at the earlier LR 1e-3, which collapses to one
  class, wordnet_pos at 3e-4 with 1,500 examples: 43.7, chance 25): MiniLM (LR 1e-4) polarity 72.0, negation 100.0,
  capital_qa F1 61.1. GLUE SST-2 at size=small: 6.3k steps per seed (accelerator).
"""

import ml_collections

from configs.electra import common
from core import config as config_lib

GLUE = ("cola", "sst2", "mrpc", "stsb", "qqp", "mnli", "qnli", "rte")
TASKS = {  # per task: max_seq_length, epochs (Appendix A: 10 for RTE / STS-B, 2 for SQuAD), seeds
  **{name: dict(max_seq_length=128, epochs=10 if name in ("rte", "stsb") else 3, seeds=10) for name in GLUE},
  "squad": dict(max_seq_length=512, epochs=2, seeds=1),
  "polarity": dict(max_seq_length=64, epochs=10, seeds=3),
  "newsgroups": dict(max_seq_length=128, epochs=5, seeds=3),
  "wordnet_pos": dict(max_seq_length=64, epochs=3, seeds=3),
  "negation": dict(max_seq_length=32, epochs=3, seeds=3),
  "word_order": dict(max_seq_length=32, epochs=3, seeds=3),
  "capital_qa": dict(max_seq_length=128, epochs=3, seeds=3),
  "wiki_links": dict(max_seq_length=64, epochs=3, seeds=3),
}


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  arg = config_lib.parse_arg(arg, task="sst2", size="small")
  if arg.task not in TASKS:
    raise config_lib.ConfigError(f"config arg task: unknown value {arg.task!r} (allowed: {', '.join(TASKS)})")
  if arg.size not in common.FINETUNE:
    allowed = ", ".join(common.FINETUNE)
    raise config_lib.ConfigError(f"config arg size: unknown value {arg.size!r} (allowed: {allowed})")
  task_row, recipe = TASKS[arg.task], common.FINETUNE[arg.size]

  config = config_lib.default_config()
  config.model = ml_collections.ConfigDict(common.model(arg.size))
  config.init_checkpoint = ""
  config.init_checkpoint_step = 0  # with a pretraining workdir: which saved step (0 = the latest)
  config.task = ml_collections.ConfigDict(
    dict(
      name=arg.task,
      data_dir="",  # GLUE TSV dir (train.tsv, dev.tsv) / SQuAD JSON dir / generated-data dir; '' = tfds or bundled
      tfds_dir="",
      vocab_path="",  # '' = the init checkpoint's vocab.txt, else the bundled BERT uncased vocab
      max_seq_length=task_row["max_seq_length"],
      max_query_length=64,
      max_answer_length=30,
      label_tokens="first",  # tagging: label the first WordPiece of each word (BERT §5.3) or 'all'
      split_seed=0,  # fixes bundled splits / generated data, independent of the finetuning seed
      train_size=0,  # > 0: cap (seeded subsample)
      dev_size=0,
    )
  )
  config.finetune = ml_collections.ConfigDict(
    dict(
      epochs=float(task_row["epochs"]),
      seeds=task_row["seeds"],
      warmup_fraction=0.1,
      layerwise_lr_decay=recipe["layerwise_lr_decay"],
      layerwise_lr_decay_reference_bug=False,  # True: top layer x d^2 as google-research/electra (#51, #64)
      head_dropout_rate=0.1,
      classifier="mlp",  # dense(H) → GELU → dense(K) on [CLS] (ELECTRA's head); 'linear': dense(K) alone
      eval_batch_size=64,
      double_unordered=arg.task in ("mrpc", "stsb"),
    )
  )
  config.train.update(
    dict(
      batch_size=32,
      total_steps=1,  # replaced by ceil(epochs x examples / batch) at run time
      log_every=50,
      eval_every=0,
      checkpoint_every=1000,
      keep_checkpoints=1,
    )
  )
  config.optimizer.update(
    dict(
      name="adamw",
      peak_lr=recipe["peak_lr"],
      schedule="warmup_times_linear",
      warmup_steps=0,  # replaced by warmup_fraction x total steps at run time
      weight_decay=0.0,
      b1=0.9,
      b2=0.999,
      eps=1e-6,
      clip_norm=1.0,
      bias_correction=False,  # ELECTRA's AdamWeightDecayOptimizer (also used for finetuning) has none
    )
  )
  return config
