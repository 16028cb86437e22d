"""realm_jax tests. TINY_ENCODER: the smallest encoder and projection every end-to-end REALM test trains (ICT,
pretraining, open QA), as --config overrides."""

TINY_ENCODER = {
  "model.hidden_size": 32,
  "model.num_layers": 1,
  "model.num_heads": 2,
  "model.intermediate_size": 64,
  "realm.proj_size": 16,
}
