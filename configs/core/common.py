"""Model sizes of core's reference BERT job (configs/core/bert_mlm.py), one named row per size.

Devlin et al. 2018 §3 (BERT-Base: 768 hidden, 12 layers, 12 heads, FFN 3072); `minilm` is the bundled MiniLM-L6
checkpoint's shape (Wang et al. 2020, all-MiniLM-L6-v2); `small` is the BERT-Small of Clark et al. 2020 Table 1 (the
ELECTRA-Small discriminator's shape); `tiny` and `mini` are CPU sizes. Benchmarks read the same
rows (`SIZES["base"]["hidden_size"]`, ...). Standard library only.
"""

SIZES = {
  "tiny": dict(hidden_size=64, num_layers=2, num_heads=2, intermediate_size=256, embedding_size=0),
  "mini": dict(hidden_size=256, num_layers=4, num_heads=4, intermediate_size=1024, embedding_size=128),
  "small": dict(hidden_size=256, num_layers=12, num_heads=4, intermediate_size=1024, embedding_size=128),
  "minilm": dict(hidden_size=384, num_layers=6, num_heads=12, intermediate_size=1536, embedding_size=0),
  "base": dict(hidden_size=768, num_layers=12, num_heads=12, intermediate_size=3072, embedding_size=0),
}  # embedding_size 0: E = H (no E -> H projection)

# The encoder fields every size shares: BERT's (Devlin et al. 2018 §3, Appendix A.2: dropout 0.1, WordPiece vocab).
ENCODER = dict(
  vocab_size=30522,
  max_position_embeddings=512,
  type_vocab_size=2,
  hidden_dropout_rate=0.1,
  attention_dropout_rate=0.1,
  layer_norm_eps=1e-12,
  initializer_range=0.02,
  dtype="float32",
)


def model(size: str) -> dict:
  """The `config.model` fields (those of `core.bert.BertConfig`) for one row of SIZES."""
  return {**ENCODER, **SIZES[size]}
