"""coco-caption's standard table through pycocoevalcap itself: BLEU-1..4, METEOR, ROUGE-L, CIDEr-D, SPICE.

    result = caption_metrics({1: ["a red circle", "one circle"]}, {1: "a red circle"})
    result["BLEU-4"], result["METEOR"], result["not_available"]   # {"SPICE": "CoreNLP models not present"}

Tokenisation (tokenizer="auto"): pycocoevalcap's PTBTokenizer (Stanford CoreNLP 3.4.1, needs Java) on
references and hypotheses, as coco-caption does; without Java the text is only split on whitespace
(so pass lower-cased, punctuation-free text) and result["tokenizer"] says so.

BLEU (corpus level, closest reference length, coco-caption's epsilons instead of smoothing), ROUGE-L and
CIDEr-D (idf over the evaluated references) are pycocoevalcap's pure-Python scorers. METEOR is
pycocoevalcap's METEOR 1.5 jar: it needs Java; its start-up (JVM + paraphrase table) costs about 10 s of
CPU, so one METEOR process is kept per Python process and shared by every call. SPICE is pycocoevalcap's
spice-1.0.jar, which needs Stanford CoreNLP 3.6.0 and its models (stanford-corenlp-3.6.0.jar and
stanford-corenlp-3.6.0-models.jar, from stanford-corenlp-full-2015-12-09.zip): they are read from the
folder named by VSBENCH_CORENLP_DIR (or pycocoevalcap's own spice/lib/ when someone put them there);
pycocoevalcap's Spice class, which downloads them, is never used. The jar runs without its LMDB cache
(its FST serialiser fails on Java >= 17) and writes nothing outside a temporary folder.
A metric that cannot run is None, with the reason in result["not_available"] ("no Java",
"CoreNLP models not present", "SPICE failed: ..."), so the rest of the table is kept.
"""

from __future__ import annotations

import atexit
import functools
import json
import os
import shutil
import subprocess
import tempfile
import threading
import time
from pathlib import Path
from typing import Any, Hashable, Mapping, Sequence

import numpy as np

__all__ = ["METRICS", "CORENLP_ENV", "caption_metrics", "metric_cell", "java_problem", "spice_classpath"]

METRICS = ("BLEU-1", "BLEU-2", "BLEU-3", "BLEU-4", "METEOR", "ROUGE-L", "CIDEr-D", "SPICE")
CORENLP_ENV = "VSBENCH_CORENLP_DIR"
CORENLP_JARS = ("stanford-corenlp-3.6.0.jar", "stanford-corenlp-3.6.0-models.jar")
NO_JAVA = "no Java"
NO_CORENLP = "CoreNLP models not present"
METEOR_TIMEOUT_S = 900.0  # start-up is ~15-35 s on a loaded 2-core machine; scoring is fast
SPICE_TIMEOUT_S = 3600.0  # SPICE parses every caption with CoreNLP: minutes for COCO-sized sets


def _check(references: Any, hypotheses: Any) -> list[Hashable]:
    """The ids in hypotheses order; ValueError / TypeError naming the argument, id and problem otherwise."""
    for name, value in (("references", references), ("hypotheses", hypotheses)):
        if not isinstance(value, Mapping):
            raise TypeError(f"{name} must be a dict keyed by image id, got {type(value).__name__}")
    if not hypotheses:
        raise ValueError("hypotheses is empty: caption metrics of no images are undefined")
    no_ref = [i for i in hypotheses if i not in references]
    no_hyp = [i for i in references if i not in hypotheses]
    if no_ref or no_hyp:
        raise ValueError(f"ids differ: {len(no_ref)} hypothesis id(s) without references {no_ref[:8]!r}, "
                         f"{len(no_hyp)} reference id(s) without a hypothesis {no_hyp[:8]!r}")
    for i, hyp in hypotheses.items():
        if not isinstance(hyp, str):
            raise TypeError(f"hypotheses[{i!r}] must be one str caption, got {type(hyp).__name__}")
        refs = references[i]
        if isinstance(refs, str) or not isinstance(refs, Sequence):
            raise TypeError(f"references[{i!r}] must be a list of str, got {type(refs).__name__}")
        if len(refs) == 0:
            raise ValueError(f"references[{i!r}] is an empty list: every image needs at least one reference")
        for k, ref in enumerate(refs):
            if not isinstance(ref, str):
                raise TypeError(f"references[{i!r}][{k}] must be a str, got {type(ref).__name__}")
            if not ref.split():
                raise ValueError(f"references[{i!r}][{k}] is an empty caption ({ref!r})")
    return list(hypotheses)


@functools.lru_cache(maxsize=8)
def _java_problem(path_env: str | None) -> str | None:
    java = shutil.which("java", path=path_env)
    if java is None:
        return f"{NO_JAVA}: `java` is not on PATH"
    try:
        run = subprocess.run([java, "-version"], capture_output=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired) as err:
        return f"{NO_JAVA}: `{java} -version` failed ({err})"
    return None if run.returncode == 0 else f"{NO_JAVA}: `{java} -version` exited with {run.returncode}"


def java_problem() -> str | None:
    """None when `java` (what pycocoevalcap calls) is on PATH and runs, else why not ("no Java: ...")."""
    return _java_problem(os.environ.get("PATH"))


def _tokenize(texts: dict[Hashable, list[str]], tokenizer: str) -> tuple[dict[Hashable, list[str]], str]:
    """(tokenised texts, tokenizer used). PTB through pycocoevalcap when Java runs and tokenizer allows."""
    if tokenizer not in ("auto", "ptb", "whitespace"):
        raise ValueError(f"tokenizer must be 'auto', 'ptb' or 'whitespace', got {tokenizer!r}")
    # str.split also breaks \r, \v, \u2028 ...: a line break that Java sees but Python's '\n' replace does
    # not would shift every later caption by one line in the PTB output
    clean = {k: [" ".join(t.split()) for t in v] for k, v in texts.items()}
    problem = java_problem() if tokenizer != "whitespace" else None
    if tokenizer == "whitespace" or (tokenizer == "auto" and problem):
        note = "whitespace" + (f" (PTB tokenisation needs Java: {problem})" if problem else "")
        return clean, note
    if problem:
        raise RuntimeError(f"tokenizer='ptb' needs Java: {problem}")
    from pycocoevalcap.tokenizer.ptbtokenizer import PTBTokenizer

    out = PTBTokenizer().tokenize({k: [{"caption": t} for t in v] for k, v in clean.items()})
    if any(len(out.get(k, [])) != len(v) for k, v in clean.items()):
        raise RuntimeError("PTB tokenizer returned a different number of lines than captions it was given")
    return out, "PTB (pycocoevalcap, Stanford CoreNLP 3.4.1)"


class _MeteorServer:
    """One pycocoevalcap Meteor process per Python process (its start-up is the expensive part)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.scorer = None
        self.started_at: float | None = None  # perf_counter when the JVM was started
        self.startup_s: float | None = None  # start -> first answer (JVM + paraphrase table + first scoring)

    def start(self):
        if self.scorer is None or self.scorer.meteor_p.poll() is not None:
            from pycocoevalcap.meteor.meteor import Meteor

            self.scorer, self.started_at, self.startup_s = Meteor(), time.perf_counter(), None
        return self.scorer

    def score(self, gts: dict, res: dict) -> tuple[float, list[float], float | None]:
        """(corpus METEOR, per image, start-up seconds when this call was the process's first answer)."""
        with self.lock:
            scorer = self.start()
            timer = threading.Timer(METEOR_TIMEOUT_S, scorer.meteor_p.kill)
            timer.start()
            try:
                score, each = scorer.compute_score(gts, res)
                first = self.startup_s is None
                if first:
                    self.startup_s = time.perf_counter() - self.started_at
                return score, each, self.startup_s if first else None
            except (ValueError, OSError) as err:
                self._discard()
                raise RuntimeError(f"METEOR jar failed or exceeded {METEOR_TIMEOUT_S:.0f} s: {err}") from err
            finally:
                timer.cancel()

    def _discard(self) -> None:
        scorer, self.scorer = self.scorer, None
        if scorer is not None:
            if scorer.lock.locked():  # compute_score does not release it on error; its __del__ would block
                scorer.lock.release()
            scorer.meteor_p.kill()

    def close(self) -> None:
        with self.lock:
            scorer, self.scorer = self.scorer, None
        del scorer  # Meteor.__del__ closes stdin and kills the JVM


_METEOR = _MeteorServer()
atexit.register(_METEOR.close)


def spice_classpath() -> tuple[list[Path] | None, str]:
    """(class path for spice-1.0.jar, "") or (None, why SPICE cannot run). Never downloads anything."""
    problem = java_problem()
    if problem:
        return None, problem
    from pycocoevalcap.spice import spice as spice_module  # imports only; its Spice() would download

    spice_dir = Path(spice_module.__file__).resolve().parent
    folders = [Path(os.environ[CORENLP_ENV]).expanduser()] if os.environ.get(CORENLP_ENV) else []
    folders.append(spice_dir / "lib")  # where pycocoevalcap's own download puts them
    for folder in folders:
        if all((folder / jar).is_file() for jar in CORENLP_JARS):
            return [spice_dir / "spice-1.0.jar", *[folder / jar for jar in CORENLP_JARS], spice_dir / "lib"], ""
    where = (f"{CORENLP_ENV}={os.environ[CORENLP_ENV]} lacks " if os.environ.get(CORENLP_ENV) else
             f"{CORENLP_ENV} is not set and pycocoevalcap's spice/lib has not ")
    return None, f"{NO_CORENLP}: {where}{' and '.join(CORENLP_JARS)}"


def _spice(gts: dict, res: dict, classpath: list[Path]) -> tuple[float, list[float]]:
    """SPICE F-score of the set (mean over images, as pycocoevalcap) and per image, from spice-1.0.jar."""
    ids = list(gts)
    rows = [{"image_id": k, "test": res[i][0], "refs": gts[i]} for k, i in enumerate(ids)]
    cp = os.pathsep.join(str(p / "*") if p.is_dir() else str(p) for p in classpath)
    with tempfile.TemporaryDirectory(prefix="vsbench-spice-") as tmp:
        src, dst = Path(tmp) / "in.json", Path(tmp) / "out.json"
        src.write_text(json.dumps(rows), encoding="utf-8")
        cmd = ["java", "-Xmx8G", "-cp", cp, "edu.anu.spice.SpiceScorer", str(src), "-out", str(dst), "-subset",
               "-silent"]
        try:
            run = subprocess.run(cmd, capture_output=True, text=True, timeout=SPICE_TIMEOUT_S)
        except subprocess.TimeoutExpired as err:
            raise RuntimeError(f"SPICE exceeded {SPICE_TIMEOUT_S:.0f} s") from err
        if run.returncode != 0 or not dst.is_file():
            tail = " | ".join(line.strip() for line in (run.stderr or run.stdout).strip().splitlines()[:2])
            raise RuntimeError(f"spice-1.0.jar exited with {run.returncode}: {tail}")
        return spice_from_output(json.loads(dst.read_text(encoding="utf-8")), len(ids))


def spice_from_output(results: list[dict], count: int) -> tuple[float, list[float]]:
    """(mean, per-image) SPICE F-scores from the jar's JSON (image_id = row number); a missing F is NaN."""
    per_image = [float("nan")] * count
    for item in results:
        f = item["scores"]["All"]["f"]
        per_image[int(item["image_id"])] = float("nan") if f is None else float(f)
    return float(np.mean(per_image)), per_image


def caption_metrics(references: Mapping[Hashable, Sequence[str]], hypotheses: Mapping[Hashable, str], *,
                    tokenizer: str = "auto", meteor: bool = True, spice: bool = True) -> dict[str, Any]:
    """coco-caption's table for `hypotheses` (image id -> one caption) against `references` (image id -> its
    captions). Returns {metric: float or None for each of METRICS, "not_available": {metric: reason},
    "per_image": {metric: {id: score}}, "tokenizer": str, "seconds": {stage: wall s}, "num_images": int}; on
    the call that started the shared METEOR process, seconds["METEOR start-up"] is the time from its start to
    its first answer (included in seconds["METEOR"]).
    A reason starts with a short cause ("no Java", "CoreNLP models not present", "METEOR failed", "not
    computed" when meteor / spice is False), then ": details". Inputs are not modified."""
    ids = _check(references, hypotheses)
    seconds: dict[str, float] = {}
    start = time.perf_counter()
    texts = {("ref", i): list(references[i]) for i in ids} | {("hyp", i): [hypotheses[i]] for i in ids}
    tokens, used = _tokenize(texts, tokenizer)
    seconds["tokenize"] = time.perf_counter() - start
    gts = {i: tokens[("ref", i)] for i in ids}
    res = {i: tokens[("hyp", i)] for i in ids}
    out: dict[str, Any] = {m: None for m in METRICS}
    per_image: dict[str, dict] = {}
    missing: dict[str, str] = {}

    def timed(stage: str, fn):
        begin = time.perf_counter()
        try:
            return fn()
        finally:
            seconds[stage] = time.perf_counter() - begin

    from pycocoevalcap.bleu.bleu import Bleu
    from pycocoevalcap.cider.cider import Cider
    from pycocoevalcap.rouge.rouge import Rouge

    bleu, bleu_each = timed("BLEU", lambda: Bleu(4).compute_score(gts, res, verbose=0))
    for n in range(4):
        out[f"BLEU-{n + 1}"] = float(bleu[n])
    per_image["BLEU-4"] = dict(zip(ids, map(float, bleu_each[3])))
    for name, scorer in (("ROUGE-L", Rouge()), ("CIDEr-D", Cider())):
        score, each = timed(name, lambda: scorer.compute_score(gts, res))
        out[name], per_image[name] = float(score), dict(zip(ids, map(float, each)))
    problem = java_problem() if meteor else "not computed"
    if problem:
        missing["METEOR"] = problem
    else:
        try:
            score, each, startup = timed("METEOR", lambda: _METEOR.score(gts, res))
            out["METEOR"], per_image["METEOR"] = float(score), dict(zip(ids, map(float, each)))
            if startup is not None:
                seconds["METEOR start-up"] = startup
        except RuntimeError as err:  # keep the rest of the table
            missing["METEOR"] = f"METEOR failed: {err}"
    classpath, why = spice_classpath() if spice else (None, "not computed")
    if classpath is None:
        missing["SPICE"] = why
    else:
        try:
            score, each = timed("SPICE", lambda: _spice(gts, res, classpath))
            out["SPICE"], per_image["SPICE"] = score, dict(zip(ids, each))
        except RuntimeError as err:
            missing["SPICE"] = f"SPICE failed: {err}"
    return {**out, "not_available": missing, "per_image": per_image, "tokenizer": used, "seconds": seconds,
            "num_images": len(ids)}


def metric_cell(result: Mapping[str, Any], metric: str) -> float | str:
    """A report cell: the value, or "n/a (<short reason>)" for a metric that could not run ("n/a (no Java)",
    "n/a (CoreNLP models not present)"; the full reason stays in result["not_available"])."""
    value = result.get(metric)
    if value is not None:
        return value
    return f"n/a ({result.get('not_available', {}).get(metric, 'not computed').split(':')[0]})"
