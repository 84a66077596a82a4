"""A run's outputs are published together or not at all (docs/design.md §9).

While a benchmark runs, everything it writes (per-sample exports, figures) goes to a private staging
folder `<out>/.staging/<benchmark>.<pid>.<random>/`. When it ends:

- success: the results JSON (the manifest: it lists every artefact with its sha256), the re-rendered
  report(s) and the index are written into the staging folder too, then a `PUBLISH` marker holding the
  list of files is written (atomically), then each file is renamed into `<out>` and the folder removed.
  A process killed after the marker is rolled forward by the next `vsbench run` / `vsbench report`
  (`recover`); killed before it, nothing of the new run is visible and its staging folder is removed.
- failure (an exception, or a result whose checks did not hold): the run is kept beside the good one,
  as `<out>/failed/<benchmark>/` (results.json, report.md, error.txt, its samples/ and figures/),
  replacing only an earlier failure of the same benchmark; the published results are untouched.

Readers trust `results/<benchmark>.json`: `verify_artifacts` re-hashes what it lists, so an export
modified after its run is named in the report instead of silently mixed with another run's numbers.
"""

from __future__ import annotations

import os
import shutil
import sys
import uuid
from pathlib import Path
from typing import Callable

from bench.storage import atomic_write_text, file_sha256, read_json

STAGING = ".staging"
FAILED = "failed"
MARKER = "PUBLISH"


class OutputFolderError(ValueError):
    """The reports folder cannot hold a run's outputs (not a folder, not writable)."""


def check_output_folder(out: Path) -> Path:
    """Create `out` if needed and prove it is writable BEFORE any work is done; OutputFolderError otherwise."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise OutputFolderError(f"--out {out}: is a file, not a folder; pass a folder (e.g. --out reports)")
    try:
        out.mkdir(parents=True, exist_ok=True)
        probe = out / f".write-probe.{os.getpid()}.{uuid.uuid4().hex[:8]}"
        probe.write_bytes(b"")
        probe.unlink()
        for sub in ("results", STAGING):
            if (out / sub).exists() and not (out / sub).is_dir():
                raise OutputFolderError(f"--out {out}: {out / sub} is a file; it must be a folder")
    except PermissionError as err:
        raise OutputFolderError(f"--out {out}: not writable ({err.strerror}); choose another folder "
                                "or fix its permissions") from err
    except OSError as err:
        if isinstance(err, OutputFolderError):
            raise
        raise OutputFolderError(f"--out {out}: cannot be used ({err})") from err
    return out


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _staged_files(folder: Path) -> list[str]:
    return sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file() and p.name != MARKER)


def _move_into(folder: Path, out: Path, files: list[str]) -> None:
    """Rename each staged file into place (idempotent: files already moved are skipped)."""
    for rel in files:
        source = folder / rel
        if source.is_file():
            target = out / rel
            target.parent.mkdir(parents=True, exist_ok=True)
            os.replace(source, target)


def recover(out: Path, log: Callable[[str], None] | None = None) -> list[str]:
    """Finish what killed runs left in `<out>/.staging`: roll forward a folder with a PUBLISH marker,
    remove one without (an interrupted run; its per-sample work is in the cache), unless its process
    is still alive. Also removes leftover `*.tmp` files of atomic writes. Returns what was done."""
    log = log or (lambda message: print(f"[vsbench] {message}", file=sys.stderr, flush=True))
    done = []
    staging = Path(out) / STAGING
    if staging.is_dir():
        for folder in sorted(p for p in staging.iterdir() if p.is_dir()):
            parts = folder.name.split(".")
            pid = int(parts[-2]) if len(parts) >= 3 and parts[-2].isdigit() else -1
            marker = folder / MARKER
            if marker.is_file():
                files = [line for line in marker.read_text(encoding="utf-8").splitlines() if line]
                _move_into(folder, Path(out), files)
                shutil.rmtree(folder, ignore_errors=True)
                done.append(f"completed the publication of {folder.name} (interrupted after its PUBLISH marker)")
            elif pid != os.getpid() and not _pid_alive(pid):
                shutil.rmtree(folder, ignore_errors=True)
                done.append(f"removed {folder.name}: a run interrupted before publishing (nothing of it was visible)")
    for tmp in Path(out).rglob(".*.tmp"):
        if STAGING not in tmp.parts and tmp.is_file():
            tmp.unlink(missing_ok=True)
            done.append(f"removed the leftover temporary file {tmp.relative_to(out)}")
    for message in done:
        log(message)
    return done


class Staging:
    """The private folder of one benchmark run and its publication."""

    def __init__(self, out: Path, benchmark: str) -> None:
        self.out = Path(out)
        self.benchmark = benchmark
        self.folder = self.out / STAGING / f"{benchmark}.{os.getpid()}.{uuid.uuid4().hex[:8]}"
        self.folder.mkdir(parents=True)

    def artifacts(self) -> dict[str, str]:
        """{relative path: sha256} of everything the benchmark wrote (before results and reports)."""
        return {rel: file_sha256(self.folder / rel) for rel in _staged_files(self.folder)}

    def publish(self, write_results_and_reports: Callable[[Path], None]) -> list[str]:
        """Let the caller write the results JSON and reports into the staging folder, then publish
        everything in it (marker, renames, cleanup). Returns the published relative paths."""
        write_results_and_reports(self.folder)
        files = _staged_files(self.folder)
        atomic_write_text(self.folder / MARKER, "\n".join(files) + "\n")
        if os.environ.get("VSBENCH_KILL_DURING_PUBLISH"):  # fault injection: die between marker and renames
            import signal

            os.kill(os.getpid(), signal.SIGKILL)
        _move_into(self.folder, self.out, files)
        shutil.rmtree(self.folder, ignore_errors=True)
        return files

    def keep_as_failed(self, write_failure: Callable[[Path], None]) -> Path:
        """Move this run to `<out>/failed/<benchmark>/` (replacing an earlier failure of it only)."""
        write_failure(self.folder)
        target = self.out / FAILED / self.benchmark
        target.parent.mkdir(parents=True, exist_ok=True)
        old = None
        if target.exists():
            old = target.with_name(f".{self.benchmark}.old.{uuid.uuid4().hex[:8]}")
            os.replace(target, old)
        os.replace(self.folder, target)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
        return target

    def discard(self) -> None:
        shutil.rmtree(self.folder, ignore_errors=True)


def verify_artifacts(out: Path, artifacts: dict[str, str]) -> list[str]:
    """Problems with the artefacts a results JSON lists: missing files, or files whose sha256 differs."""
    problems = []
    for rel, digest in sorted(artifacts.items()):
        path = Path(out) / rel
        if not path.is_file():
            problems.append(f"{rel} is missing")
        elif file_sha256(path) != digest:
            problems.append(f"{rel} was modified after this run (sha256 differs from the results JSON)")
    return problems


def read_failed(out: Path) -> dict[str, dict]:
    """{benchmark: its failed run's results dict} for every run kept under `<out>/failed/`."""
    found = {}
    folder = Path(out) / FAILED
    if folder.is_dir():
        for sub in sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith(".")):
            try:
                found[sub.name] = read_json(sub / "results.json")
            except (OSError, ValueError):
                found[sub.name] = {"benchmark": sub.name, "problems": ["results.json unreadable"]}
    return found


__all__ = ["Staging", "check_output_folder", "recover", "verify_artifacts", "read_failed", "OutputFolderError"]
