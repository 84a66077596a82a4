"""Loading an implementation named as MODULE:OBJECT (the --impl plugin), with clear errors."""

from __future__ import annotations

import importlib
import os
import sys
from pathlib import Path


class ImplementationError(Exception):
    """An --impl spec that cannot be loaded; the message names the spec and the problem."""


def repo_root() -> Path | None:
    """The checkout holding cases/ (for the known-bad replicas): VSBENCH_ROOT, the cwd, or above bench/."""
    candidates = [os.environ.get("VSBENCH_ROOT"), os.getcwd(), str(Path(__file__).resolve().parent.parent)]
    for candidate in candidates:
        if candidate and (Path(candidate) / "cases" / "interface").is_dir():
            return Path(candidate)
    return None


def load_object(spec: str):
    """Import `package.module:object.attr` and return the object."""
    if ":" not in spec:
        raise ImplementationError(f"--impl {spec!r}: expected MODULE:OBJECT, e.g. mypkg.pix2seq:PIPELINE")
    module_name, _, attr_path = spec.partition(":")
    root = repo_root()
    if module_name.split(".")[0] == "cases" and root is not None and str(root) not in sys.path:
        sys.path.insert(0, str(root))
    try:
        obj = importlib.import_module(module_name)
    except Exception as err:  # any import failure, not only ModuleNotFoundError
        raise ImplementationError(f"--impl {spec!r}: cannot import module {module_name!r}: "
                                  f"{type(err).__name__}: {err}") from err
    for attr in attr_path.split("."):
        if not hasattr(obj, attr):
            raise ImplementationError(f"--impl {spec!r}: {getattr(obj, '__name__', repr(obj))} has no attribute {attr!r}")
        obj = getattr(obj, attr)
    return obj
