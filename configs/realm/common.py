"""Encoder shapes of REALM's networks (query / document embedders, knowledge-augmented encoder), one row per size.

REALM, arXiv 2002.08909 §4 (BERT-base for all three networks); `minilm` is the bundled MiniLM-L6 checkpoint's shape
(all-MiniLM-L6-v2, loaded with `init_from='minilm'`); `tiny` is this project's CPU size. Field names are those of
`core.bert.BertConfig` (`embedding_size` 0: E = H). Standard library only.
"""

SIZES = {
  "tiny": dict(hidden_size=128, num_layers=2, num_heads=4, intermediate_size=512, embedding_size=0),
  "minilm": dict(hidden_size=384, num_layers=6, num_heads=12, intermediate_size=1536, embedding_size=0),
  "base": dict(hidden_size=768, num_layers=12, num_heads=12, intermediate_size=3072, embedding_size=0),
}
