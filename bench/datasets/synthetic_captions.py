"""Caption grammar of the generated dataset: five distinct, true descriptions of each image.

A caption names only colours and shapes that are in the image (background words are "plain",
"gradient", "noisy", never a colour), counts are exact, and relations are read from object centres
("a red circle to the left of a blue square" when the horizontal offset dominates, "above"/"below"
otherwise). Templates: inventory by colour and shape, count by shape, count of colours, one pairwise
relation, the position of one shape in the frame, the largest shape. Openers and background suffixes
vary the surface form.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import Sequence

import numpy as np

NUMBER_WORDS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten")
PLURALS = {"circle": "circles", "square": "squares", "triangle": "triangles", "star": "stars",
           "pentagon": "pentagons", "hexagon": "hexagons"}


@dataclass(frozen=True)
class CaptionObject:
    """What the grammar needs to know of one instance (COCO coordinates)."""

    colour: str
    shape: str
    cx: float
    cy: float
    area: float


def number(n: int) -> str:
    return NUMBER_WORDS[n] if 0 <= n < len(NUMBER_WORDS) else str(n)


def plural(word: str) -> str:
    return PLURALS.get(word, word + "s")


def article(phrase: str) -> str:
    return ("an " if phrase[0] in "aeiou" else "a ") + phrase


def counted(n: int, phrase: str, noun: str) -> str:
    """'a red circle' / 'two red circles' where phrase = 'red circle' and noun = 'circle'."""
    if n == 1:
        return article(phrase)
    return f"{number(n)} {phrase[: len(phrase) - len(noun)]}{plural(noun)}"


def join(items: Sequence[str]) -> str:
    if len(items) == 1:
        return items[0]
    return ", ".join(items[:-1]) + " and " + items[-1]


def region(cx: float, cy: float, size: int) -> str:
    """Where (cx, cy) lies in a 3x3 grid of the frame, as a phrase."""
    col = min(int(3 * cx / size), 2)
    row = min(int(3 * cy / size), 2)
    if (row, col) == (1, 1):
        return "in the centre"
    vertical = ("top", "", "bottom")[row]
    horizontal = ("left", "", "right")[col]
    if vertical and horizontal:
        return f"in the {vertical} {horizontal} corner"
    return f"on the {vertical or horizontal}"


def relation(a: CaptionObject, b: CaptionObject, min_offset: float) -> str | None:
    """Where a is relative to b, along the axis of the larger centre offset; None when that offset is
    under `min_offset` pixels (one shape nested in or stacked on the other: no clear relation)."""
    dx, dy = a.cx - b.cx, a.cy - b.cy
    if max(abs(dx), abs(dy)) < min_offset:
        return None
    if abs(dx) >= abs(dy):
        return "to the left of" if dx < 0 else "to the right of"
    return "above" if dy < 0 else "below"


def _inventory(objs: Sequence[CaptionObject], rng: np.random.Generator) -> str:
    groups = Counter((o.colour, o.shape) for o in objs)
    keys = sorted(groups)
    order = rng.permutation(len(keys))
    return join([counted(groups[keys[i]], f"{keys[i][0]} {keys[i][1]}", keys[i][1]) for i in order])


def _by_shape(objs: Sequence[CaptionObject], rng: np.random.Generator) -> str:
    groups = Counter(o.shape for o in objs)
    keys = sorted(groups)
    return join([counted(groups[keys[i]], keys[i], keys[i]) for i in rng.permutation(len(keys))])


def _colours(objs: Sequence[CaptionObject], rng: np.random.Generator) -> str:
    colours = sorted({o.colour for o in objs})
    listed = join([colours[i] for i in rng.permutation(len(colours))])
    n = len(objs)
    if len(colours) == 1:
        return counted(n, f"{listed} shape", "shape")
    return f"{number(n)} shapes in {listed}"


def _relation(objs: Sequence[CaptionObject], rng: np.random.Generator, size: int) -> str | None:
    if len(objs) < 2:
        return None
    i, j = rng.choice(len(objs), size=2, replace=False)
    a, b = objs[int(i)], objs[int(j)]
    how = relation(a, b, min_offset=size / 16)
    if how is None:
        return None
    other = "another " if (a.colour, a.shape) == (b.colour, b.shape) else "a" + ("n " if b.colour[0] in "aeiou" else " ")
    return f"{article(a.colour + ' ' + a.shape)} {how} {other}{b.colour} {b.shape}"


def _position(objs: Sequence[CaptionObject], rng: np.random.Generator, size: int) -> str:
    o = objs[int(rng.integers(len(objs)))]
    return f"{article(o.colour + ' ' + o.shape)} {region(o.cx, o.cy, size)}"


def _largest(objs: Sequence[CaptionObject], rng: np.random.Generator) -> str | None:
    if len(objs) < 2:
        return None
    areas = sorted(o.area for o in objs)
    if areas[-1] < 1.5 * areas[-2]:
        return None  # no clearly largest shape
    o = max(objs, key=lambda x: x.area)
    return f"the largest shape is {article(o.colour + ' ' + o.shape)}"


OPENERS = ("", "an image of ", "a picture of ", "a drawing of ", "there is ")
SUFFIXES = ("", " on a {bg} background", " against a {bg} background")


def make_captions(
    objs: Sequence[CaptionObject], background: str, size: int, rng: np.random.Generator, count: int = 5
) -> list[str]:
    """`count` captions of one image (distinct whenever the grammar allows it; lower case, no period)."""
    if not objs:
        return [f"an empty {background} background"] * count
    out: list[str] = []
    for attempt in range(20 * count):
        template = attempt % 6 if attempt < 6 else int(rng.integers(6))
        if template == 0:
            body = _inventory(objs, rng)
        elif template == 1:
            body = _by_shape(objs, rng)
        elif template == 2:
            body = _colours(objs, rng)
        elif template == 3:
            body = _relation(objs, rng, size)
        elif template == 4:
            body = _position(objs, rng, size)
        else:
            body = _largest(objs, rng)
        if body is None:
            continue
        opener = OPENERS[int(rng.integers(len(OPENERS)))]
        if opener == "there is " and not body.startswith(("a ", "an ")):
            opener = "there are " if not body.startswith("the ") else ""
        text = opener + body + SUFFIXES[int(rng.integers(len(SUFFIXES)))].format(bg=background)
        if text not in out:
            out.append(text)
        if len(out) == count:
            break
    while len(out) < count:  # only when the grammar has fewer distinct sentences than `count`
        out.append(out[len(out) % max(len(out), 1)])
    return out
