"""Noisy captions with a known answer, for measuring CapFilt's filter: each image keeps most of its own captions and
gets `per_image` captions of OTHER images in their place, and the bookkeeping says which ones.

A swapped caption must be WRONG for its new image, not merely another image's. The generated captions name only
colours and shapes that are in the image, with exact counts (bench/datasets/synthetic_captions.py), so a donor image
is admissible for a target when
- they share no (colour, shape) pair: every caption naming a coloured shape (inventory, relation, position,
  largest) then names one the target lacks;
- their shape counts differ: the by-shape caption ("two circles and a star") is then false;
- their (object count, colour set) differ: the colour caption ("three shapes in red and blue") is then false.
Every caption of an admissible donor is thus false for the target (`admissible_donor`).

Filter scores: a caption the filter REMOVES is a positive of the detection task; precision = removed captions that
were injected / all removed, recall = injected captions removed / all injected (`filter_precision_recall`).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import Collection, Mapping, Sequence

import numpy as np

ColouredShape = tuple[str, str]  # (colour, shape) of one object


@dataclass(frozen=True)
class NoisyCaption:
    image_id: int
    index: int  # position among the image's captions
    text: str
    injected: bool  # True: a caption of `donor_image_id` put here (wrong for this image)
    donor_image_id: int | None = None
    donor_index: int | None = None


def admissible_donor(target: Sequence[ColouredShape], donor: Sequence[ColouredShape]) -> bool:
    """True when every caption of the donor image is false for the target image (see the module docstring)."""
    if set(target) & set(donor):
        return False
    if Counter(s for _, s in target) == Counter(s for _, s in donor):
        return False
    return (len(target), {c for c, _ in target}) != (len(donor), {c for c, _ in donor})


def inject_noise(captions: Mapping[int, Sequence[str]], objects: Mapping[int, Sequence[ColouredShape]],
                 per_image: int, seed: int = 0, max_tries: int = 1000,
                 targets: Collection[int] | None = None) -> list[NoisyCaption]:
    """Every caption of every image (in image order, then caption order), `per_image` of the captions of each image
    in `targets` (default: every image; the others keep theirs, like BLIP's human-annotated part) replaced, at
    positions drawn at random, by a random caption of a random admissible donor image. Deterministic for a seed.
    ValueError when a target has fewer than `per_image` captions or no admissible donor is found."""
    if per_image < 0:
        raise ValueError(f"per_image must be >= 0, got {per_image}")
    ids = list(captions)
    missing = [i for i in ids if i not in objects]
    if missing:
        raise ValueError(f"objects lacks the images {missing[:5]}")
    rng = np.random.default_rng(seed)
    noisy_ids = set(ids) if targets is None else set(targets)
    out: list[NoisyCaption] = []
    for image_id in ids:
        own = list(captions[image_id])
        if image_id not in noisy_ids:
            out.extend(NoisyCaption(image_id, index, text, False) for index, text in enumerate(own))
            continue
        if len(own) < per_image:
            raise ValueError(f"image {image_id} has {len(own)} captions, fewer than per_image={per_image}")
        swapped = set(rng.choice(len(own), size=per_image, replace=False).tolist()) if per_image else set()
        for index, text in enumerate(own):
            if index not in swapped:
                out.append(NoisyCaption(image_id, index, text, False))
                continue
            for _ in range(max_tries):
                donor = ids[int(rng.integers(len(ids)))]
                if donor != image_id and captions[donor] and admissible_donor(objects[image_id], objects[donor]):
                    break
            else:
                raise ValueError(f"no admissible donor found for image {image_id} in {max_tries} tries")
            k = int(rng.integers(len(captions[donor])))
            out.append(NoisyCaption(image_id, index, captions[donor][k], True, donor, k))
    return out


def as_captions(noisy: Sequence[NoisyCaption], keep: Sequence[bool] | None = None) -> dict[int, list[str]]:
    """{image id: its captions in order}, only the kept ones when `keep` (one flag per caption) is given; an image
    whose every caption is removed keeps an empty list."""
    if keep is not None and len(keep) != len(noisy):
        raise ValueError(f"{len(keep)} keep flags for {len(noisy)} captions")
    out: dict[int, list[str]] = {}
    for n, c in enumerate(noisy):
        out.setdefault(c.image_id, [])
        if keep is None or bool(keep[n]):
            out[c.image_id].append(c.text)
    return out


def filter_precision_recall(removed: Sequence[bool], injected: Sequence[bool]) -> dict[str, float | int | None]:
    """Counts and scores of a filter's removals against the injected noise (one flag each per caption): tp
    (injected and removed), fp (clean but removed), fn (injected but kept), tn; precision = tp / (tp + fp), recall
    = tp / (tp + fn), f1; a score with a zero denominator is None."""
    if len(removed) != len(injected):
        raise ValueError(f"{len(removed)} removal flags for {len(injected)} injected flags")
    r, i = np.asarray(removed, dtype=bool), np.asarray(injected, dtype=bool)
    tp, fp = int((r & i).sum()), int((r & ~i).sum())
    fn, tn = int((~r & i).sum()), int((~r & ~i).sum())
    precision = tp / (tp + fp) if tp + fp else None
    recall = tp / (tp + fn) if tp + fn else None
    f1 = (2 * precision * recall / (precision + recall)
          if precision is not None and recall is not None and precision + recall > 0 else None)
    return {"tp": tp, "fp": fp, "fn": fn, "tn": tn, "precision": precision, "recall": recall, "f1": f1,
            "removed": tp + fp, "injected": tp + fn, "captions": len(r)}
