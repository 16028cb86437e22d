"""Inverse Cloze Task warm start of REALM's retriever (REALM arXiv 2002.08909 §3.4; ORQA arXiv 1906.00300 §5).

Command:
  python -m realm_jax.ict --config=configs/realm/ict.py --workdir=$WORKDIR                       # CPU: synthetic, tiny
  python -m realm_jax.ict --config=configs/realm/ict.py:corpus=wordnet_wikipedia --workdir=$WORKDIR
  python -m realm_jax.ict --config=configs/realm/ict.py:corpus=synthetic,size=minilm --workdir=$WORKDIR  # MiniLM init
  python -m realm_jax.ict --config=configs/realm/ict.py:corpus=wikipedia --workdir=$WORKDIR \
      --config.data.tfds_dir=gs://bucket/tensorflow_datasets                                    # ORQA scale
Args (`:key=value,...`): corpus = synthetic | wordnet_wikipedia | wikipedia (tfds wikipedia/20230601.en, prepared
  as array_record in data.tfds_dir; the paper scale), size = tiny | minilm | base (configs/realm/common.py; default:
  tiny, base for wikipedia).
Expected: ORQA and REALM report the ICT warm start only through downstream open-QA (REALM §3.4: without it the
  retriever is not learnt; not reproduced here). This project, synthetic + tiny, 400 steps (results/
  realm_ict_synthetic.json): the 40 held-out documents' pseudo-queries find their source document among all 200 with
  recall@1 0.275 / recall@5 0.875 (chance 0.005 / 0.025); with dropout 0.1 (BERT's) only 0.05 / 0.175 at 400 steps.
Runtime: synthetic tiny 1.5 steps/s on 2 shared CPU cores (400 steps + 4 evals: ~4.7 min wall with compile);
  size=minilm, corpus=wordnet_wikipedia: not measured; ORQA scale: batch 4096, 100k steps of BERT-base on TPUs.
"""

import ml_collections

from configs.realm import common
from core import config as config_lib

CORPORA = ("synthetic", "wordnet_wikipedia", "wikipedia")


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  arg = config_lib.parse_arg(arg, corpus="synthetic", size="")
  if arg.corpus not in CORPORA:
    raise config_lib.ConfigError(f"config arg corpus: unknown value {arg.corpus!r} (allowed: {', '.join(CORPORA)})")
  size = arg.size or ("base" if arg.corpus == "wikipedia" else "tiny")
  if size not in common.SIZES:
    raise config_lib.ConfigError(f"config arg size: unknown value {size!r} (allowed: {', '.join(common.SIZES)})")
  paper = arg.corpus == "wikipedia"  # ORQA's full-scale ICT run (language/orqa flags: query 64, block 288 tokens)
  synthetic = arg.corpus == "synthetic"

  config = config_lib.default_config()
  config.model = ml_collections.ConfigDict(common.model(size))  # tiny: no dropout (common.model)
  config.realm = ml_collections.ConfigDict(  # the embedders' head, as in configs/realm/pretrain.py
    dict(
      proj_size=128,  # d = 128 (REALM §3.2)
      pooling="mean" if size == "minilm" else "cls",  # cls (paper) | mean (how MiniLM was trained to embed)
    )
  )
  config.init_from = "minilm" if size == "minilm" else ""  # '' (random) | 'minilm' | a HuggingFace BERT directory
  config.data = ml_collections.ConfigDict(
    dict(
      corpus=arg.corpus,
      num_entities=100,  # synthetic: a profile and a biography per entity
      synthetic_corpus="profiles",  # the Z of configs/realm/pretrain.py: profiles | profiles_and_biographies
      # wordnet_wikipedia / wikipedia: at most this many documents (0 = all). wordnet_wikipedia's 10,000 (a uniform
      # sample of 122,121) hold 435 ICT examples: WordNet glosses are mostly one sentence, skipped.
      max_docs=0 if paper else 10_000,
      block_words=220,  # wikipedia: articles cut into blocks of this many words (~288 wordpieces)
      query_len=64 if paper else 32,
      doc_len=288 if paper else (80 if synthetic else 128),
      vocab_path="",  # '' = the bundled BERT uncased vocab
      tfds_dir="",  # wikipedia: where wikipedia/20230601.en is prepared (may be gs://); '' = tfds's default
    )
  )
  config.ict = ml_collections.ConfigDict(dict(remove_probability=0.9))  # ORQA §5: the sentence stays in 10%
  config.eval = ml_collections.ConfigDict(
    dict(
      num_queries=1000 if paper else 40,  # held-out documents, one pseudo-query each (never trained on)
      max_corpus=1_000_000 if paper else 0,  # documents searched at eval: held-out + a fixed sample (0 = all)
    )
  )
  config.train.update(
    dict(
      batch_size=4096 if paper else 32,
      total_steps=100_000 if paper else 400,
      log_every=100 if paper else 20,
      eval_every=10_000 if paper else 100,
      checkpoint_every=10_000 if paper else 200,
    )
  )
  config.optimizer.update(
    dict(
      name="adamw",
      peak_lr=1e-4 if paper else (3e-4 if size != "tiny" else 1e-3),
      schedule="warmup_linear",
      warmup_steps=10_000 if paper else 40,
      weight_decay=0.01,
      clip_norm=1.0,
    )
  )
  return config
