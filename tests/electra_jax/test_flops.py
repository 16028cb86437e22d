"""FLOPs accounting against the paper's Table 1 and the reference flops_computation.py (electra.md §6)."""

import os

import pytest

from core import bert as bert_lib
from core import flops as core_flops
from electra_jax import flops, model, pretrain
from tests.helpers import REPO, load_config

SMALL = bert_lib.BertConfig(hidden_size=256, num_layers=12, num_heads=4, intermediate_size=1024, embedding_size=128)


def test_electra_small_and_bert_small_are_about_1p4e18():
  gen = model.generator_config(SMALL, 0.25)
  electra = 1_000_000 * flops.pretrain_flops_per_step("electra", SMALL, 128, 128, gen)
  bert = 1_450_000 * flops.pretrain_flops_per_step("mlm", SMALL, 128, 128)
  assert electra == pytest.approx(1.4e18, rel=0.2)  # paper Table 1
  assert bert == pytest.approx(1.4e18, rel=0.2)
  # The reference script's own values (flops_computation.py MODEL_FLOPS), up to our 5·h attention LayerNorm.
  assert electra == pytest.approx(1.2937e18, rel=1e-3)
  assert bert == pytest.approx(1.4187e18, rel=1e-3)
  assert bert / electra == pytest.approx(1.1, abs=0.05)  # "BERT-Small given 1.45M steps to match"


def test_base_runs_are_matched_and_large_matches_the_reference():
  base = bert_lib.BertConfig()
  electra = 766_000 * flops.pretrain_flops_per_step("electra", base, 256, 512, model.generator_config(base, 1 / 3))
  bert = 1_000_000 * flops.pretrain_flops_per_step("mlm", base, 256, 512)
  assert electra == pytest.approx(6.4245e19, rel=1e-3) and bert == pytest.approx(6.4283e19, rel=1e-3)
  large = bert_lib.BertConfig(hidden_size=1024, num_layers=24, num_heads=16, intermediate_size=4096)
  electra_400k = 400_000 * flops.pretrain_flops_per_step(
    "electra", large, 2048, 512, model.generator_config(large, 0.25)
  )
  assert electra_400k == pytest.approx(7.1176e20, rel=1e-3)


def test_backward_factor_and_matched_steps():
  gen = model.generator_config(SMALL, 0.25)
  two = flops.pretrain_flops_per_step("electra", SMALL, 128, 128, gen)
  three = flops.pretrain_flops_per_step("electra", SMALL, 128, 128, gen, backward_factor=2.0)
  assert three == pytest.approx(1.5 * two)
  assert flops.compute_matched_steps(1_000_000 * two, flops.pretrain_flops_per_step("mlm", SMALL, 128, 128)) == (
    pytest.approx(1.32e6, rel=0.01)
  )


def test_tiny_mlm_twin_is_compute_matched():
  electra = load_config(os.path.join(REPO, "configs/electra/tiny.py"), None, {})
  twin = load_config(os.path.join(REPO, "configs/electra/tiny.py"), "mlm=true", {})
  spent = [pretrain.flops_per_step(c) * c.train.total_steps for c in (electra, twin)]
  assert spent[1] == pytest.approx(spent[0], rel=0.01)
  assert twin.objective.name == "mlm" and twin.model == electra.model and twin.optimizer == electra.optimizer


def test_discriminator_model_flops_are_the_matmuls():
  # What benchmarks/electra/step_vs_torch.py reports as model FLOPs: E -> H projection, per layer QKVO + FFN + QKᵀ +
  # AV, the head dense(h) and logit; training = 3 x forward.
  h, f, e, n, batch, seq_len = 256, 1024, 128, 12, 32, 128
  per_token = n * (2 * (4 * h * h + 2 * h * f) + 4 * seq_len * h) + 2 * e * h + 2 * (h * h + h)
  shape = core_flops.TransformerShape.from_bert_config(SMALL, seq_len)
  got = flops.discriminator_train_flops(shape, batch, backward_factor=2.0, matmul_only=True)
  assert got == pytest.approx(3.0 * per_token * batch * seq_len, rel=1e-12)
