"""REALM pretraining (Guu et al. 2020, §3-4 and Appendix A): marginal likelihood over a refreshed MIPS index.

Command:
  python -m realm_jax.pretrain --config=configs/realm/pretrain.py --workdir=$WORKDIR                    # CPU, synthetic
  python -m realm_jax.pretrain --config=configs/realm/pretrain.py:corpus=bundled --workdir=$WORKDIR     # WordNet+Wiki
  python -m realm_jax.pretrain --config=configs/realm/pretrain.py:size=base,corpus=bundled,paper=true --workdir=...
Args: size=tiny|minilm|base (configs/realm/common.py), corpus=synthetic|bundled, paper=true|false (the paper's
  optimisation: batch 512, 200k steps, lr 3e-5, k = 8, 288-token blocks, BERT-base; needs an accelerator pod).
Expected: paper: NQ 39.2 / WQ 40.2 EM after open-QA finetuning (Table 1, 64 TPUs). This project, CPU synthetic:
  size=minilm from a MiniLM ICT warm start, 200 entities, k = 2, query_len 24, retriever_delay_steps 150, 400 steps:
  held-out masked-attribute accuracy 0.944 with retrieval vs 0.112 with ∅ alone (results/realm_synthetic_minilm.json,
  the command in realm_jax/README.md). Stale-index ablation (weak ICT, reader_from, retriever LR x0.1, refresh every
  10 steps): 0.781 refreshed vs 0.350 never refreshed (results/realm_stale_ablation_minilm.json).
Runtime: synthetic tiny: about 1 s/step on 2 CPU cores (batch 8, k 4); minilm (k 2): 2.6 s/step; paper: 200k steps
  on 64 TPUs.
"""

import ml_collections

from configs.realm import common
from core import config as config_lib


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  arg = config_lib.parse_arg(arg, size="tiny", corpus="synthetic", paper=False)
  if arg.size not in common.SIZES:
    raise config_lib.ConfigError(f"config arg size: unknown value {arg.size!r} (allowed: {', '.join(common.SIZES)})")
  if arg.corpus not in ("synthetic", "bundled"):
    raise config_lib.ConfigError(f"config arg corpus: unknown value {arg.corpus!r} (allowed: synthetic, bundled)")
  synthetic = arg.corpus == "synthetic"

  config = config_lib.default_config()
  config.model = ml_collections.ConfigDict(common.model(arg.size))  # tiny: no dropout (common.model)
  config.init_from = "minilm" if arg.size == "minilm" else ""  # '' | 'minilm' | a HuggingFace BERT directory
  config.retriever_from = ""  # an ICT run's workdir (python -m realm_jax.ict): the warm start of §3.4
  # A saved reader (benchmarks/realm/reader_oracle.py --save_reader DIR; realm_jax/warm_start.py): a reader that reads
  # from step 0, as the paper's BERT MLM head does; MiniLM has no MLM head. '' = the reader of init_from.
  config.reader_from = ""
  config.data = ml_collections.ConfigDict(
    dict(
      corpus=arg.corpus,
      masking="salient_span",  # salient_span | random_span | uniform (Table 2's ablation)
      query_len=32 if synthetic else 64,
      doc_len=80 if synthetic else (288 if arg.paper else 128),
      max_masks=6 if synthetic else 10,  # the reference's max_masks = 10
      num_entities=100,  # synthetic: entities (a profile and a biography each) and the held-out share
      synthetic_corpus="profiles",  # Z: profiles (biographies = pretraining text X) | profiles_and_biographies
      heldout_fraction=0.2,
      max_docs=0,  # bundled: 0 = the whole WordNet + Wikipedia corpus (122,121 documents)
      max_queries=0,  # bundled: 0 = every sentence with a salient span
    )
  )
  config.realm = ml_collections.ConfigDict(
    dict(
      proj_size=128,  # d of Embed_input / Embed_doc (§4)
      pooling="mean" if arg.size == "minilm" else "cls",  # cls (paper) | mean (how MiniLM was trained to embed)
      k=8 if arg.paper else 4,  # retrieved documents per query, ∅ added (paper: 8)
      refresh_every=500 if arg.paper else 20,  # steps between index refreshes (paper: "about every 500 steps")
      index_backend="exact",  # exact (core.mips on the device) | scann (host)
      embed_batch=256,
      per_mask=True,  # marginalise each masked token separately, as the reference code does
      # The embedders' learning rate relative to the reader's. 1 in the paper, whose reader starts from BERT; a
      # reader trained from scratch gives the retriever noise at first, and Adam turns noise into full-size steps
      # (CPU pilot: the ICT retriever's gold recall@4 fell 0.55 -> 0.10 in 60 steps at 1).
      retriever_lr_multiplier=1.0 if arg.paper or arg.size != "tiny" else 0.1,
      # Steps the embedders wait (learning rate 0) while the reader warms up. 0 in the paper (BERT's MLM head reads
      # from step 0); MiniLM has no MLM head, and its random head's noise sends the retriever's gold recall@4 from
      # 0.90 to 0.29 in 30 steps (CPU pilot; frozen it holds 0.85 at step 100). A delay must outlast the reader's
      # warm-up: 200 steps of 8 at 1,000 entities did not (recall@4 0.59 -> 0.004 by step 300; realm_jax/README.md).
      retriever_delay_steps=0,
      eval_queries=512,
    )
  )
  config.train.update(
    dict(
      batch_size=512 if arg.paper else 8,
      total_steps=200_000 if arg.paper else 400,
      log_every=100 if arg.paper else 20,
      eval_every=5000 if arg.paper else 100,
      checkpoint_every=5000 if arg.paper else 100,
    )
  )
  config.optimizer.update(
    dict(
      name="adamw",
      peak_lr=3e-5 if arg.paper else (1e-3 if arg.size == "tiny" else 1e-4),  # minilm: a pretrained encoder
      schedule="warmup_linear",
      warmup_steps=10_000 if arg.paper else 40,  # reference: min(10000, max(100, steps / 10))
      weight_decay=0.01,
      clip_norm=1.0,
      eps=1e-6,
    )
  )
  return config
