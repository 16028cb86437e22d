"""ELECTRA's sizes and hyperparameters, one row per size: the table every configs/electra/*.py file reads.

Clark et al. 2020, Appendix A: Table 6 (pretraining: model shape, generator size, learning rate, batch, steps,
masking), Table 7 (finetuning: learning rate, layer-wise decay) and §3.4 / Table 1 (the BERT twins' step counts,
matched on pretraining compute by `electra_jax.flops`). `tiny` is this project's CPU size, not a paper size.
Benchmarks read the same rows (`SIZES["small"]["hidden_size"]`, ...). Standard library only.
"""

SIZES = {
  "tiny": dict(
    hidden_size=128,
    num_layers=4,
    num_heads=2,
    intermediate_size=512,
    embedding_size=128,
    generator_fraction=1 / 4,
    peak_lr=1e-4,
    warmup_steps=30,
    batch_size=32,
    total_steps=300,
    mlm_total_steps=520,  # the MLM twin's compute-matched steps (electra_jax.flops; pinned by tests/test_configs.py)
    seq_len=128,
    mask_prob=0.15,
  ),
  "small": dict(
    hidden_size=256,
    num_layers=12,
    num_heads=4,
    intermediate_size=1024,
    embedding_size=128,
    generator_fraction=1 / 4,
    peak_lr=5e-4,
    warmup_steps=10_000,
    batch_size=128,
    total_steps=1_000_000,
    mlm_total_steps=1_450_000,
    seq_len=128,
    mask_prob=0.15,
  ),
  "base": dict(
    hidden_size=768,
    num_layers=12,
    num_heads=12,
    intermediate_size=3072,
    embedding_size=768,
    generator_fraction=1 / 3,
    peak_lr=2e-4,
    warmup_steps=10_000,
    batch_size=256,
    total_steps=766_000,
    mlm_total_steps=1_000_000,
    seq_len=512,
    mask_prob=0.15,
  ),
  "large": dict(
    hidden_size=1024,
    num_layers=24,
    num_heads=16,
    intermediate_size=4096,
    embedding_size=1024,
    generator_fraction=1 / 4,
    peak_lr=2e-4,
    warmup_steps=10_000,
    batch_size=2048,
    total_steps=400_000,
    mlm_total_steps=400_000,
    seq_len=512,
    mask_prob=0.25,
  ),
}

# Finetuning (Table 7): peak LR per size (tiny 3e-4: at 1e-3 it collapses to the majority class), layer-wise decay.
FINETUNE = {
  "tiny": dict(peak_lr=3e-4, layerwise_lr_decay=0.8),
  "small": dict(peak_lr=3e-4, layerwise_lr_decay=0.8),
  "base": dict(peak_lr=1e-4, layerwise_lr_decay=0.8),
  "large": dict(peak_lr=5e-5, layerwise_lr_decay=0.9),
}

# The encoder fields every size shares (BERT's, which ELECTRA keeps: Table 6 dropout 0.1, WordPiece vocab).
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
SHAPE_FIELDS = ("hidden_size", "num_layers", "num_heads", "intermediate_size", "embedding_size")


def model(size: str) -> dict:
  """The `config.model` fields (those of `core.bert.BertConfig`) for one row of SIZES."""
  return {**ENCODER, **{name: SIZES[size][name] for name in SHAPE_FIELDS}}
