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


def user_paths() -> list[str]:
    """Folders searched for an --impl module besides sys.path: VSBENCH_IMPL_PATH (os.pathsep-separated;
    `tox -e cases` sets it to the folder tox was started from) and the current folder."""
    extra = [p for p in os.environ.get("VSBENCH_IMPL_PATH", "").split(os.pathsep) if p]
    return extra + [os.getcwd()]


def load_object(spec: str):
    """Import `package.module:object.attr` and return the object. The module may live in the current
    folder or a folder of VSBENCH_IMPL_PATH (a user's own file next to where they run the suite)."""
    if ":" not in spec:
        raise ImplementationError(f"--impl {spec!r}: expected MODULE:OBJECT, e.g. mypkg.pix2seq:PIPELINE")
    module_name, _, attr_path = spec.partition(":")
    root = repo_root()
    if module_name.split(".")[0] == "cases" and root is not None and str(root) not in sys.path:
        sys.path.insert(0, str(root))
    for folder in reversed(user_paths()):
        if folder not in sys.path and Path(folder).is_dir():
            sys.path.insert(0 if folder != os.getcwd() else len(sys.path), folder)
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
