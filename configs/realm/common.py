"""Encoder shapes of REALM's networks (query / document embedders, knowledge-augmented encoder), one row per size.

REALM, arXiv 2002.08909 §4 (BERT-base for all three networks); `minilm` is the bundled MiniLM-L6 checkpoint's shape
(all-MiniLM-L6-v2, loaded with `init_from='minilm'`); `tiny` is this project's CPU size. Field names are those of
`core.bert.BertConfig` (`embedding_size` 0: E = H). Imports configs.core.common (BERT's shared encoder fields) only.
"""

from configs.core import common as core_common

SIZES = {
  "tiny": dict(hidden_size=128, num_layers=2, num_heads=4, intermediate_size=512, embedding_size=0),
  "minilm": dict(hidden_size=384, num_layers=6, num_heads=12, intermediate_size=1536, embedding_size=0),
  "base": dict(hidden_size=768, num_layers=12, num_heads=12, intermediate_size=3072, embedding_size=0),
}


def model(size: str) -> dict:
  """The `config.model` fields (`core.bert.BertConfig`) of one row of SIZES. `tiny` trains without dropout: with
  BERT's 0.1 the tiny CPU models barely move in a few hundred steps (measured for ICT: recall@5 0.175 vs 0.875 at
  400 steps; results/realm_ict_synthetic.json)."""
  fields = {**core_common.ENCODER, **SIZES[size]}
  if size == "tiny":
    fields.update(hidden_dropout_rate=0.0, attention_dropout_rate=0.0)
  return fields
