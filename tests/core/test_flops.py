"""core.flops: the matmul-only (MFU) count against the written-out formula, conventions, MFU."""

import pytest

from core import bert as bert_lib
from core import flops

SMALL = bert_lib.BertConfig(hidden_size=256, num_layers=12, num_heads=4, intermediate_size=1024, embedding_size=128)
TINY = bert_lib.BertConfig(hidden_size=64, num_layers=2, num_heads=2, intermediate_size=256)


def _mlm_matmul_flops_by_hand(config, batch, seq_len):
  h, f, e, v, n = config.hidden_size, config.intermediate_size, config.emb_size, config.vocab_size, config.num_layers
  # QKVO + FFN and QKᵀ, AV per layer; E -> H projection; dense H -> E and tied logits E -> V at every position.
  per_layer = 2 * (4 * h * h + 2 * h * f) + 4 * seq_len * h
  forward_per_token = n * per_layer + (2 * e * h if e != h else 0) + 2 * (h * e + e * v)
  return 3.0 * forward_per_token * batch * seq_len


@pytest.mark.parametrize("config", [SMALL, TINY])
def test_mlm_model_flops_are_the_matmuls(config):
  shape = flops.TransformerShape.from_bert_config(config, seq_len=128)
  got = flops.mlm_train_flops(shape, 32, output_frac=1.0, backward_factor=2.0, matmul_only=True)
  assert got == pytest.approx(_mlm_matmul_flops_by_hand(config, 32, 128), rel=1e-12)


def test_operation_count_adds_elementwise_work_and_one_hot_lookups():
  shape = flops.TransformerShape.from_bert_config(SMALL, seq_len=128)
  h, s, i, heads = 256, 128, 1024, 4
  elementwise = 3 * h + 10 * s * heads + h + 4 * h + h + 5 * h + i + 8 * i + h + 4 * h + h + 5 * h
  assert flops.block_flops(shape) - flops.block_flops(shape, matmul_only=True) == elementwise
  assert flops.input_embedding_flops(shape, matmul_only=True) == 2 * 128 * 256  # lookups are gathers: free
  assert flops.input_embedding_flops(shape) > 2 * 128 * 30522  # lookups as one-hot matmuls
  no_projection = flops.TransformerShape(hidden=64, layers=1, seq_len=8, embedding=64)
  assert flops.input_embedding_flops(no_projection, matmul_only=True) == 0


def test_train_is_forward_times_one_plus_backward_factor_and_mfu():
  assert flops.train_flops(10.0, 2, 3, 4, backward_factor=1.0) == 2 * 2 * 3 * 4 * 10.0
  assert flops.train_flops(10.0, 2, 3, backward_factor=2.0) == 3 * 2 * 3 * 10.0
  assert flops.mfu(1e9, 0.5, 4e9) == pytest.approx(0.5)
  with pytest.raises(ValueError, match="must be > 0"):
    flops.mfu(1e9, 0.0, 4e9)
