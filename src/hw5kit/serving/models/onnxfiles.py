"""ONNX files on disk, shared by the fp32 exports (``runtime.py``) and the int8 artefacts
(``quantization.py``): the graph's input and output names, the cache folder next to the baked
weights, the weights' digest that names a file, and the atomic write that puts one in place.

Standard library only: it imports nothing of the serving stack, so both users import it at
module level without importing each other.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import tempfile
from pathlib import Path

# The names of the exported graph's input and output (fp32 exports and int8 models alike).
INPUT_NAME = "pixels"
OUTPUT_NAME = "probabilities"


def onnx_cache_dir(torch_home: Path | None = None) -> Path:
    """``<TORCH_HOME>/hw5kit/onnx``: next to the baked weights, filled by ``weights bake``."""
    if torch_home is None:
        env_home = os.environ.get("TORCH_HOME")
        if env_home:
            torch_home = Path(env_home)
        else:
            xdg = os.environ.get("XDG_CACHE_HOME", str(Path.home() / ".cache"))
            torch_home = Path(xdg) / "torch"
    return torch_home / "hw5kit" / "onnx"


def weights_digest(path: Path) -> str:
    """The SHA-256 of a weights file: part of the name of every ONNX file made from it."""
    with path.open("rb") as fh:
        return hashlib.file_digest(fh, "sha256").hexdigest()


def write_atomically(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` through a temporary file renamed over it (mode 0644: a
    non-root server must read it); a reader sees the old file or the whole new one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=path.name, suffix=".partial", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        os.chmod(tmp, 0o644)  # mkstemp makes it private
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
