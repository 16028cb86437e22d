"""Reading Debian packages (.deb = an `ar` archive holding data.tar.*) with the standard library, so the bundled
Debian sources unpack off Debian too; `dpkg-deb` is only a fallback for compressions tarfile cannot read."""

from __future__ import annotations

import io
import shutil
import subprocess
import tarfile
from pathlib import Path


def read_data_tar(deb: Path) -> tarfile.TarFile:
  """Opens the data.tar.* member of a .deb (an `ar` archive) with the stdlib only."""
  with open(deb, "rb") as f:
    if f.read(8) != b"!<arch>\n":
      raise RuntimeError(f"{deb} is not a Debian package (no ar magic)")
    while True:
      header = f.read(60)
      if len(header) < 60:
        break
      member = header[:16].decode("ascii").strip().rstrip("/")
      size = int(header[48:58].decode("ascii").strip())
      payload = f.read(size)
      if size % 2:
        f.read(1)
      if member.startswith("data.tar"):
        try:
          return tarfile.open(fileobj=io.BytesIO(payload), mode="r:*")
        except tarfile.ReadError:
          if shutil.which("dpkg-deb") is None:
            raise RuntimeError(
              f"{deb}: cannot read {member} with Python's tarfile and dpkg-deb is not installed"
            ) from None
          tar_bytes = subprocess.run(["dpkg-deb", "--fsys-tarfile", str(deb)], capture_output=True, check=True).stdout
          return tarfile.open(fileobj=io.BytesIO(tar_bytes), mode="r:")
  raise RuntimeError(f"{deb} has no data.tar member")
