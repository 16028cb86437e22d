"""realm_jax.pretrain end to end on a tiny synthetic corpus: the logged signals, kill + resume keeps the index and
the params bitwise, 8 devices give the 1-device loss, bad configs are one-line errors before any work."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from core import checkpoint as checkpoint_lib
from core import config as config_lib
from tests.helpers import REPO, load_config
from tests.realm_jax import TINY_ENCODER

CONFIG = os.path.join(REPO, "configs/realm/pretrain.py")
TINY = {
  **TINY_ENCODER,
  "realm.k": 2,
  "realm.refresh_every": 3,
  "realm.embed_batch": 8,
  "realm.eval_queries": 8,
  "data.num_entities": 6,
  "data.query_len": 24,
  "data.doc_len": 48,
  "data.max_masks": 4,
  "train.batch_size": 8,
  "train.total_steps": 4,
  "train.log_every": 1,
  "train.eval_every": 4,
  "train.checkpoint_every": 2,
  "train.progress": False,
  "train.async_checkpoints": False,
  "optimizer.warmup_steps": 1,
}


def _config(**overrides):
  return load_config(CONFIG, None, {**TINY, **overrides})


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
  from realm_jax import pretrain

  workdir = str(tmp_path_factory.mktemp("realm_full"))
  return workdir, pretrain.train_and_evaluate(_config(), workdir)


def test_the_run_logs_realm_signals_and_writes_its_index(uninterrupted):
  workdir, result = uninterrupted
  train = [h for h in result.history if h["split"] == "train"]
  assert [h["index_staleness"] for h in train] == [0.0, 1.0, 2.0, 0.0]  # refreshed at steps 0 and 3
  for name in ("retrieval_utility", "gold_recall_at_k", "p_null", "log_p_y_given_x", "accuracy"):
    assert all(np.isfinite(h[name]) for h in train), name
  assert all(0.0 < h["p_null"] < 1.0 for h in train)
  final = json.load(open(os.path.join(workdir, "results.json")))
  assert final["index_refreshes"] == 2 and final["index_embedded_at"] == 3
  assert {"accuracy", "null_accuracy", "gold_recall_at_k"} <= set(final["final_eval"])
  assert np.load(os.path.join(workdir, "index", "embeddings.npy")).shape == (6, 16)  # the 6 profiles
  queries = np.load(os.path.join(workdir, "index", "queries.npy"))  # the held-out queries, as the index embeds them
  assert queries.shape == (4, 16) and np.isfinite(queries).all()  # 1 held-out entity x 4 attributes


def test_kill_and_resume_keeps_the_index_and_the_params_bitwise(uninterrupted, tmp_path):
  from realm_jax import pretrain

  full_dir, full = uninterrupted
  workdir = str(tmp_path / "resumed")
  no_eval = {"train.eval_every": 0}  # evaluation does not touch training: the resumed runs skip its compile
  pretrain.train_and_evaluate(_config(**{"train.total_steps": 2}, **no_eval), workdir)
  template = {"index": pretrain.make_task(_config())[1].index.state()}
  saved = checkpoint_lib.Checkpointer(workdir).restore_host(template, 2)["index"]
  assert int(saved["embedded_at"]) == 0  # the step-0 index, which steps 1-2 read and the resumed step 2 must read
  resumed = pretrain.train_and_evaluate(_config(**no_eval), workdir)
  assert resumed.resumed_from == 2
  for a, b in zip(_leaves(full.params), _leaves(resumed.params)):
    np.testing.assert_array_equal(a, b)
  np.testing.assert_array_equal(np.load(os.path.join(workdir, "index", "embeddings.npy")),
                                np.load(os.path.join(full_dir, "index", "embeddings.npy")))
  restarted = [h for h in resumed.history if h["split"] == "train"]
  assert [h["index_staleness"] for h in restarted] == [2.0, 0.0]  # step 2 used the restored index, no refresh


def _leaves(tree):
  import jax

  return [np.asarray(x) for x in jax.tree.leaves(tree)]


_EIGHT_DEVICES = """
import json, sys
from realm_jax import pretrain
from tests.helpers import load_config
config = load_config("configs/realm/pretrain.py", None, json.loads(sys.argv[1]))
result = pretrain.train_and_evaluate(config, sys.argv[2])
print(json.dumps([h["loss"] for h in result.history if h["split"] == "train"]))
"""


def test_eight_devices_give_the_one_device_loss(uninterrupted, tmp_path):
  """Batch rows, the corpus embedding and the parameters' optimizer sharded over 8 host devices: same losses."""
  _, one = uninterrupted
  overrides = {**TINY, "train.eval_every": 0}
  env = {**os.environ, "PYTHONPATH": REPO, "XLA_FLAGS": "--xla_force_host_platform_device_count=8"}
  out = subprocess.run([sys.executable, "-c", _EIGHT_DEVICES, json.dumps(overrides), str(tmp_path)], cwd=REPO, env=env,
                       capture_output=True, text=True, timeout=600)
  assert out.returncode == 0, out.stderr[-3000:]
  eight = json.loads(out.stdout.strip().splitlines()[-1])
  np.testing.assert_allclose(eight, [h["loss"] for h in one.history if h["split"] == "train"], rtol=2e-5)


@pytest.mark.parametrize(
  "overrides, message",
  [
    ({"realm.k": 6}, r"^realm\.k: 6 is larger than the corpus of 6 documents minus one$"),
    ({"realm.k": 12, "data.synthetic_corpus": "profiles_and_biographies"},
     r"^realm\.k: 12 is larger than the corpus of 12"),
    ({"data.synthetic_corpus": "novels"}, r"^data\.synthetic_corpus: .*novels"),
    ({"realm.refresh_every": 0}, r"^realm\.refresh_every: .*>= 1"),
    ({"realm.index_backend": "faiss"}, r"^realm\.index_backend: .*faiss"),
    ({"data.corpus": "enwik8"}, r"^data\.corpus: .*enwik8"),
    ({"data.masking": "whole_word"}, r"^data\.masking: .*whole_word"),
    ({"data.max_masks": 24}, r"^data\.max_masks: 24 must be < data\.query_len"),
    ({"data.doc_len": 500}, r"^data\.doc_len: join\(x, z\) of 523 tokens exceeds"),
    ({"realm.proj_size": 0}, r"^model: proj_size must be a positive int"),
    ({"init_from": "/no/such/dir"}, r"^init_from: '/no/such/dir' is neither a directory"),
    ({"retriever_from": "/no/such/ict"}, r"^retriever_from: '/no/such/ict' is neither a directory"),
    ({"reader_from": "/no/such/reader"}, r"^reader_from: '/no/such/reader' is neither a directory"),
  ],
)
def test_bad_configs_are_one_line_errors_before_any_work(overrides, message, tmp_path):
  from realm_jax import pretrain

  with pytest.raises(config_lib.ConfigError, match=message) as error:
    pretrain.validate(_config(**overrides))
  assert "\n" not in str(error.value)


def test_the_entry_point_refuses_a_bad_config_in_one_line_and_writes_nothing(tmp_path):
  workdir = tmp_path / "untouched"
  out = subprocess.run(
    [sys.executable, "-m", "realm_jax.pretrain", f"--config={CONFIG}", f"--workdir={workdir}", "--config.realm.k=0"],
    cwd=REPO, env={**os.environ, "PYTHONPATH": REPO}, capture_output=True, text=True, timeout=300,
  )
  assert out.returncode == 2
  assert out.stderr.strip().splitlines()[-1].startswith("error: realm.k: ")
  assert not workdir.exists()


def test_retriever_delay_holds_the_embedders_then_releases_them_at_their_multiplier():
  import jax
  import jax.numpy as jnp

  from core import optim
  from realm_jax import pretrain

  config = _config(**{"realm.retriever_delay_steps": 2, "realm.retriever_lr_multiplier": 0.5})
  task, _ = pretrain.make_task(config)
  factors = task.lr_multipliers({"query_embedder": {"w": 0.0}, "doc_embedder": {"w": 0.0}, "reader": {"w": 0.0}})
  config.optimizer.update(dict(name="sgd", b1=0.0, peak_lr=1.0, schedule="constant", warmup_steps=0, clip_norm=0.0,
                               weight_decay=0.0))
  tx, _ = optim.make_optimizer(config.optimizer, 10, lr_multipliers=lambda p: factors)
  params = {name: {"w": jnp.zeros(())} for name in factors}
  state, seen = tx.init(params), []
  for _ in range(3):
    updates, state = tx.update(jax.tree.map(jnp.ones_like, params), state, params)
    seen.append({name: -float(u["w"]) for name, u in updates.items()})
  assert [row["query_embedder"] for row in seen] == [0.0, 0.0, 0.5]
  assert [row["doc_embedder"] for row in seen] == [0.0, 0.0, 0.5]
  assert [row["reader"] for row in seen] == [1.0, 1.0, 1.0]


def test_reader_from_loads_a_saved_reader_into_the_reader_alone(tmp_path):
  import jax

  from realm_jax import pretrain, warm_start

  config = _config()
  _, run = pretrain.make_task(config)
  fresh = jax.device_get(jax.jit(run.init_params)(jax.random.key(7)))
  saved = jax.tree.map(lambda x: x + 1.0, fresh["reader"])
  warm_start.save_reader(str(tmp_path / "r"), saved, {"note": "test"})
  with pytest.raises(FileExistsError, match="never overwritten"):
    warm_start.save_reader(str(tmp_path / "r"), fresh["reader"], {})
  task, _ = pretrain.make_task(_config(reader_from=str(tmp_path / "r")))
  assert set(task.initial_params) == {"reader"}  # the embedders keep the loop's own init
  jax.tree.map(np.testing.assert_array_equal, task.initial_params["reader"], saved)
  wider = _config(**{"reader_from": str(tmp_path / "r"), "model.intermediate_size": 2 * config.model.intermediate_size})
  with pytest.raises(config_lib.ConfigError, match=r"^reader_from: .* has shape .*model section") as error:
    pretrain.make_task(wider)
  assert "\n" not in str(error.value)
  with pytest.raises(config_lib.ConfigError, match=r"^reader_from: .* holds no saved reader"):
    pretrain.make_task(_config(reader_from=str(tmp_path)))


def test_reader_oracle_hands_the_reader_the_gold_profile_after_null():
  from benchmarks.realm import reader_oracle
  from realm_jax import data as data_lib

  ids_NxL = np.arange(12, dtype=np.int32).reshape(4, 3) + 10
  rows = data_lib.DocumentRows(ids_NxL, np.ones_like(ids_NxL), np.array([1, 2, 0], np.int32),
                               np.array([1, 1, 0], np.int32))
  batch = {"gold_docs": np.array([[2, -1], [0, 3]], np.int32)}
  gold = reader_oracle.with_candidates(batch, rows, "gold")
  np.testing.assert_array_equal(gold["candidate_ids"], ids_NxL[[2, 0]][:, None])  # the first gold document only
  pair = reader_oracle.with_candidates(batch, rows, "null_gold")
  np.testing.assert_array_equal(pair["candidate_ids"][:, 0], [[1, 2, 0]] * 2)  # ∅ first, as the index orders it
  np.testing.assert_array_equal(pair["candidate_mask"][:, 0], [[1, 1, 0]] * 2)
  np.testing.assert_array_equal(pair["candidate_ids"][:, 1], ids_NxL[[2, 0]])
  assert pair["candidate_valid"].shape == (2, 2) and pair["gold_hit"].tolist() == [1.0, 1.0]


def test_paper_results_script_runs_refreshed_and_stale(tmp_path):
  from benchmarks.realm import paper_results

  argv = [
    "--workdir", str(tmp_path / "runs"), "--entities", "60", "--ict_steps", "2", "--ict_eval_queries", "8",
    "--steps", "2", "--eval_queries", "8", "--only", "refreshed,stale", "--results_dir", str(tmp_path),
    "--k", "2", "--query_len", "24", "--reader_steps", "2", "--reader_batch", "4", "--retriever_lr", "0.5",
    "--refresh_every", "1"]  # fmt: skip
  path = paper_results.main(argv)
  results = json.load(open(path))
  written = (tmp_path / "runs" / "stale" / "results.json").read_text()
  # Run again over the finished runs: they are read back (no step trained), their results.json kept as written.
  assert json.load(open(paper_results.main(argv)))["rows"] == results["rows"]
  assert (tmp_path / "runs" / "stale" / "results.json").read_text() == written
  run_config = json.load(open(tmp_path / "runs" / "stale" / "config.json"))
  assert (run_config["realm"]["k"], run_config["data"]["query_len"]) == (2, 24)
  assert run_config["reader_from"] == str(tmp_path / "runs" / "reader")  # every run starts from the saved reader
  assert run_config["realm"]["retriever_lr_multiplier"] == 0.5 and results["reader"]["mode"] == "gold"
  assert [row["run"] for row in results["rows"]] == ["refreshed", "stale"]
  assert results["rows"][1]["overrides"]["realm.refresh_every"] == 3  # never refreshed after step 0
  assert json.load(open(tmp_path / "runs" / "refreshed" / "config.json"))["realm"]["refresh_every"] == 1
  for row in results["rows"]:
    assert row["refreshes"] == 1 and [p["step"] for p in row["eval_curve"]] == [1, 2]
    assert 0.0 <= row["final"]["accuracy"] <= 1.0 and 0.0 <= row["final"]["null_accuracy"] <= 1.0
  assert (tmp_path / "realm_synthetic.png").exists()
