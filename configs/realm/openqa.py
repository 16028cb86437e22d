"""REALM open-domain QA finetuning (Guu et al. 2020 §4, following ORQA, Lee et al. 2019 §4 and §9).

Command:
  python -m realm_jax.openqa --config=configs/realm/openqa.py:size=minilm --workdir=$WORKDIR          # CPU, capitals
  python -m realm_jax.openqa --config=configs/realm/openqa.py:size=minilm \
      --config.realm_from=$PRETRAIN_WORKDIR --workdir=$WORKDIR                     # from a realm_jax.pretrain run
  python -m realm_jax.openqa --config=configs/realm/openqa.py:dataset=nq_open,paper=true \
      --config.realm_from=$PRETRAIN_WORKDIR --config.data.tfds_dir=$TFDS --workdir=$WORKDIR
Args: size=tiny|minilm|base (configs/realm/common.py; default tiny, base with paper=true), dataset=capitals|quiz|
  nq_open|web_questions (realm_jax/openqa_data.py), paper=true|false (ORQA's finetuning: BERT-base, k = 5, lr 1e-5,
  query 64 / block 288 tokens, span width 10, span MLP 256; ORQA reads one question per step, here batch 8; NQ
  300k questions ≈ 3.8 epochs, WQ 20 epochs).
Expected: paper: test EM NQ 40.4 / WQ 40.7 (REALM CC-News, Table 1; ORQA 33.3 / 36.4), retrieving from 13M Wikipedia
  blocks; our corpus is WordNet + a 106-article Wikipedia excerpt, so nq_open / web_questions keep only the
  questions it can answer and are not comparable (not run here: no tfds data on this box).
  This project, capitals, size=minilm (MiniLM in all three encoders, mean pooling, 2,000 documents, 142 train /
  94 dev questions; results/realm_openqa_capitals.json): dev exact match 0.64 at step 30, 0.84 at 50, 0.89 at 100
  (an answer among the top 5: 0.99).
Runtime: size=minilm on 2 CPU cores shared with other jobs: 50 s to embed the 2,000 documents, 5.2 s/step (batch 8,
  k 5), 672 s for the 100 steps with 2 evaluations; paper: one 12 GB GPU (REALM §4).
"""

import ml_collections

from configs.realm import common
from core import config as config_lib

DATASETS = ("capitals", "quiz", "nq_open", "web_questions")
# ORQA's schedule in questions read (batch 1): NQ checkpoint 300k, WQ 3,417 x 20 epochs; the quiz sets: 20 epochs.
PAPER_QUESTIONS = {"nq_open": 300_000, "web_questions": 3417 * 20, "capitals": 146 * 20, "quiz": 167 * 20}


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  arg = config_lib.parse_arg(arg, size="", dataset="capitals", paper=False)
  size = arg.size or ("base" if arg.paper else "tiny")
  if size not in common.SIZES:
    raise config_lib.ConfigError(f"config arg size: unknown value {size!r} (allowed: {', '.join(common.SIZES)})")
  if arg.dataset not in DATASETS:
    raise config_lib.ConfigError(f"config arg dataset: unknown value {arg.dataset!r} (allowed: {', '.join(DATASETS)})")
  paper, batch_size = arg.paper, 8

  config = config_lib.default_config()
  config.model = ml_collections.ConfigDict(common.model(size))  # tiny: no dropout (common.model)
  config.init_from = "minilm" if size == "minilm" else ""  # '' | 'minilm' | a HuggingFace BERT directory
  config.retriever_from = ""  # an ICT run's workdir (python -m realm_jax.ict): its two embedders
  config.realm_from = ""  # a realm_jax.pretrain workdir: all three networks from its latest checkpoint
  config.data = ml_collections.ConfigDict(
    dict(
      dataset=arg.dataset,
      query_len=64 if paper else 16,  # ORQA: 64; the quiz questions are at most ~14 wordpieces
      doc_len=288 if paper else 48,  # ORQA: 288-token blocks; a WordNet gloss fits in 48
      max_docs=0 if paper else 2000,  # 0 = the whole corpus (122,121 docs); else a sample keeping every gold doc
      max_questions=0,  # 0 = all; else a seeded sample (quiz, tfds: of each split)
      dev_fraction=0.4,  # capitals: share of the questions held out as dev (never trained on)
      tfds_dir="",  # nq_open / web_questions: where tfds prepared them ('' = tfds's default directory)
    )
  )
  config.realm = ml_collections.ConfigDict(
    dict(
      proj_size=128,  # d of Embed_input / Embed_doc (§4)
      pooling="mean" if size == "minilm" else "cls",  # cls (paper) | mean (how MiniLM was trained to embed)
      k=5,  # retrieved documents per question (REALM §4 / ORQA reader_beam_size)
      refresh_every=1 if paper else 10,  # steps between query-embedder copies for search (ORQA: the live one)
      index_backend="exact",  # exact (core.mips) | scann (host)
      embed_batch=256,
      span_hidden_size=256,  # ORQA span_hidden_size
      max_span_width=10,  # ORQA max_span_width
    )
  )
  config.eval = ml_collections.ConfigDict(dict(max_questions=0, batch_size=16, predictions=20))
  config.results_dir = ""  # also write <results_dir>/realm_openqa_<dataset>.json ('' = only the workdir)
  config.train.update(
    dict(
      batch_size=batch_size,
      total_steps=PAPER_QUESTIONS[arg.dataset] // batch_size if paper else 100,  # CPU: ~5.6 epochs of capitals
      log_every=100 if paper else 10,
      eval_every=1000 if paper else 50,
      checkpoint_every=1000 if paper else 50,
    )
  )
  config.optimizer.update(
    dict(
      name="adamw",
      peak_lr=1e-5 if paper else 1e-4,  # ORQA: 1e-5
      schedule="warmup_linear",
      warmup_steps=100 if paper else 10,
      weight_decay=0.01,
      clip_norm=1.0,
    )
  )
  return config
