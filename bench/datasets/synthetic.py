"""The generated (embedded default) dataset: coloured shapes on varied backgrounds, in COCO format.

Layout under `root`:

    images/{train,val}/<12-digit image id>.png
    annotations/instances_{split}.json   COCO instances: bbox, exact polygon, 5 named keypoints, colour
    annotations/captions_{split}.json    COCO captions: `captions_per_image` captions per image
    MANIFEST.json                        generator version, config, sha256 of every file, fingerprint

Every image is drawn from its own random stream seeded by (seed, split, index), so the same config gives
the same bytes, and a split does not change when the size of the other split does. Image ids: train
1..num_train, val 1_000_001.. (unique across splits). See synthetic_shapes.py for the coordinate
convention and synthetic_captions.py for the caption grammar.
"""

from __future__ import annotations

import json
import os
import shutil
import uuid
from dataclasses import asdict, dataclass, field
from pathlib import Path

import cv2
import numpy as np

from bench.datasets.synthetic_captions import CaptionObject, make_captions
from bench.datasets.synthetic_shapes import (
    KEYPOINT_NAMES,
    KEYPOINT_SKELETON,
    SHAPES,
    background,
    extreme_keypoints,
    keypoint_visibility,
    place_shapes,
    polygon_area,
    render,
)
from bench.storage import atomic_write_text, file_sha256, read_json, stable_hash

# Bump whenever the output changes for an unchanged config: it keys the cache, so a stale cached
# dataset is never reused. tests/test_datasets.py pins the content hash of a tiny dataset to catch misses.
GENERATOR_VERSION = 3
SPLITS = ("train", "val")
VAL_ID_OFFSET = 1_000_000
MANIFEST = "MANIFEST.json"

DEFAULT_PALETTE: tuple[tuple[str, tuple[int, int, int]], ...] = (
    ("red", (220, 30, 30)),
    ("green", (30, 190, 60)),
    ("blue", (50, 100, 240)),
    ("yellow", (235, 220, 40)),
    ("purple", (165, 60, 215)),
    ("orange", (245, 140, 20)),
    ("white", (240, 240, 240)),
)


@dataclass(frozen=True)
class SyntheticConfig:
    """Everything that determines the generated dataset (its hash keys the cache)."""

    seed: int = 0  # root of every image's random stream
    image_size: int = 128  # square images, pixels
    num_train: int = 2000  # images in the train split
    num_val: int = 200  # images in the val split
    min_objects: int = 1  # objects per image, drawn uniformly in [min_objects, max_objects] ...
    max_objects: int = 4  # ... (a shape with no room left under the overlap rules is dropped)
    classes: tuple[str, ...] = ("circle", "square", "triangle", "star")  # category ids 1.. in this order
    palette: tuple[tuple[str, tuple[int, int, int]], ...] = DEFAULT_PALETTE  # (colour name, RGB)
    min_size: int = 16  # smallest circumscribed diameter of a shape, pixels
    max_size: int = 48  # largest circumscribed diameter of a shape, pixels
    min_visible: float = 0.7  # fraction of each shape's pixels that later shapes must leave visible
    captions_per_image: int = 5  # reference captions per image

    def __post_init__(self) -> None:
        problems = []
        if self.image_size < 16:
            problems.append(f"image_size={self.image_size} < 16")
        if self.num_train < 0 or self.num_val < 0 or self.num_train >= VAL_ID_OFFSET:
            problems.append(f"num_train={self.num_train}, num_val={self.num_val} out of range")
        if not 0 <= self.min_objects <= self.max_objects:
            problems.append(f"need 0 <= min_objects <= max_objects, got {self.min_objects}, {self.max_objects}")
        if not 4 <= self.min_size <= self.max_size <= self.image_size - 4:
            problems.append(f"need 4 <= min_size <= max_size <= image_size - 4, got {self.min_size}, {self.max_size}")
        if not 0.0 <= self.min_visible <= 1.0:
            problems.append(f"min_visible={self.min_visible} outside [0, 1]")
        unknown = [c for c in self.classes if c not in SHAPES]
        if unknown or not self.classes or len(set(self.classes)) != len(self.classes):
            problems.append(f"classes {self.classes!r} must be distinct names from {sorted(SHAPES)}")
        names = [name for name, _ in self.palette]
        if not names or len(set(names)) != len(names):
            problems.append("palette needs at least one colour and distinct colour names")
        if self.captions_per_image < 1:
            problems.append(f"captions_per_image={self.captions_per_image} < 1")
        if problems:
            raise ValueError("invalid SyntheticConfig: " + "; ".join(problems))

    def hash(self) -> str:
        """Stable hash of the config and the generator version."""
        return stable_hash({"generator_version": GENERATOR_VERSION, "config": asdict(self)})


def _check_split(split: str) -> str:
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; expected one of {SPLITS}")
    return split


@dataclass(frozen=True)
class DatasetPaths:
    """Where a generated dataset lives, and the fingerprint (hash of all its files) that identifies it."""

    root: Path
    fingerprint: str = field(default="")

    def images_dir(self, split: str) -> Path:
        return self.root / "images" / _check_split(split)

    def instances_json(self, split: str) -> Path:
        return self.root / "annotations" / f"instances_{_check_split(split)}.json"

    def captions_json(self, split: str) -> Path:
        return self.root / "annotations" / f"captions_{_check_split(split)}.json"

    @classmethod
    def open(cls, root: str | os.PathLike) -> "DatasetPaths":
        """A generated dataset (FileNotFoundError when its MANIFEST.json is not there). The fingerprint is
        that of the files AS STORED now (re-hashed, not read from the manifest), so a replaced image gives
        another fingerprint and never reuses cached outputs; `matches_manifest` says whether they changed."""
        root = Path(root)
        read_json(root / MANIFEST)  # FileNotFoundError / ValueError naming the manifest
        return cls(root, stable_hash(_file_hashes(root)))

    def matches_manifest(self) -> bool:
        """True when the files hash to the fingerprint recorded at generation."""
        return self.fingerprint == str(read_json(self.root / MANIFEST).get("fingerprint"))

    def verify(self) -> None:
        """Re-hash every file; ValueError naming the first file that differs from the manifest."""
        recorded = read_json(self.root / MANIFEST)["files"]
        actual = _file_hashes(self.root)
        for rel in sorted(set(recorded) | set(actual)):
            if recorded.get(rel) != actual.get(rel):
                raise ValueError(f"{self.root / rel}: missing, extra or modified since generation")


def _file_hashes(root: Path) -> dict[str, str]:
    files = sorted(p for sub in ("images", "annotations") for p in (root / sub).rglob("*") if p.is_file())
    return {p.relative_to(root).as_posix(): file_sha256(p, length=64) for p in files}


def _write_image(path: Path, data: bytes) -> None:
    """Write through a temporary file and a rename, like bench.storage.atomic_write_bytes, but without
    one fsync per image (it dominated the generation time). Durability comes from the manifest, written
    last with fsync: it holds every file's sha256, and `DatasetPaths.verify()` re-checks them."""
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def _json(value) -> str:
    """Deterministic compact JSON text of plain Python data (sorted keys, one trailing newline)."""
    return json.dumps(value, sort_keys=True, separators=(",", ":")) + "\n"


def _image_records(config: SyntheticConfig, split: str, index: int, image_id: int):
    """Draw one image. Returns (png bytes, COCO image dict, list of annotation dicts without ids, captions)."""
    rng = np.random.default_rng(np.random.SeedSequence([config.seed, SPLITS.index(split), index]))
    size = config.image_size
    bg, bg_kind = background(rng, size)
    count = int(rng.integers(config.min_objects, config.max_objects + 1))
    shapes = place_shapes(rng, size, count, config.classes, config.palette, config.min_size, config.max_size,
                          config.min_visible)
    image = render(bg, shapes, dict(config.palette))
    ok, png = cv2.imencode(".png", cv2.cvtColor(image, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_PNG_COMPRESSION, 1])
    if not ok:
        raise RuntimeError(f"PNG encoding failed for {split} image {index}")
    file_name = f"{image_id:012d}.png"
    anns, objs = [], []
    for k, s in enumerate(shapes):
        xy = s.vertices.astype(np.float64) + 0.5  # OpenCV pixel index -> COCO continuous coordinate
        kps = extreme_keypoints(s.vertices.astype(np.float64))
        vis = keypoint_visibility(kps, k, shapes)
        x0, y0 = xy.min(axis=0)
        x1, y1 = xy.max(axis=0)
        area = polygon_area(xy)
        keypoints = []
        for (kx, ky), v in zip(kps + 0.5, vis):
            keypoints += [round(float(kx), 3), round(float(ky), 3), v]
        anns.append({
            "image_id": image_id,
            "category_id": config.classes.index(s.shape) + 1,
            "bbox": [float(x0), float(y0), float(x1 - x0), float(y1 - y0)],
            "area": area,
            "segmentation": [xy.ravel().tolist()],
            "iscrowd": 0,
            "keypoints": keypoints,
            "num_keypoints": sum(v > 0 for v in vis),
            "colour": s.colour,
        })
        objs.append(CaptionObject(s.colour, s.shape, float(kps[0, 0] + 0.5), float(kps[0, 1] + 0.5), area))
    captions = make_captions(objs, bg_kind, size, rng, config.captions_per_image)
    info = {"id": image_id, "file_name": file_name, "width": size, "height": size, "background": bg_kind}
    return png.tobytes(), info, anns, captions


def _write_dataset(root: Path, config: SyntheticConfig) -> DatasetPaths:
    paths = DatasetPaths(root)
    info = {"description": "vsbench generated shapes", "generator_version": GENERATOR_VERSION,
            "config": asdict(config)}
    categories = [{"id": i + 1, "name": name, "supercategory": "shape", "keypoints": list(KEYPOINT_NAMES),
                   "skeleton": [list(e) for e in KEYPOINT_SKELETON]} for i, name in enumerate(config.classes)]
    for split in SPLITS:
        n = config.num_train if split == "train" else config.num_val
        offset = 0 if split == "train" else VAL_ID_OFFSET
        images, annotations, captions = [], [], []
        paths.images_dir(split).mkdir(parents=True, exist_ok=True)
        for index in range(n):
            image_id = offset + index + 1
            png, image, anns, caps = _image_records(config, split, index, image_id)
            _write_image(paths.images_dir(split) / image["file_name"], png)
            images.append(image)
            for ann in anns:
                annotations.append({"id": len(annotations) + 1, **ann})
            for cap in caps:
                captions.append({"id": len(captions) + 1, "image_id": image_id, "caption": cap})
        common = {"info": info, "licenses": [], "images": images}
        atomic_write_text(paths.instances_json(split),
                          _json({**common, "annotations": annotations, "categories": categories}))
        atomic_write_text(paths.captions_json(split), _json({**common, "annotations": captions}))
    files = _file_hashes(root)
    fingerprint = stable_hash(files)
    manifest = {"generator_version": GENERATOR_VERSION, "config": asdict(config), "config_hash": config.hash(),
                "files": files, "fingerprint": fingerprint}
    atomic_write_text(root / MANIFEST, _json(manifest))
    return DatasetPaths(root, fingerprint)


def generate_dataset(root: str | os.PathLike, config: SyntheticConfig | None = None) -> DatasetPaths:
    """Generate the dataset described by `config` into `root` (created; existing files are overwritten).
    Returns its paths and fingerprint. Same config -> same bytes in every file."""
    return _write_dataset(Path(root), config or SyntheticConfig())


def default_cache_root() -> Path:
    """$VSBENCH_DATA_DIR, else ~/.cache/vsbench/data."""
    env = os.environ.get("VSBENCH_DATA_DIR")
    return Path(env) if env else Path.home() / ".cache" / "vsbench" / "data"


def default_dataset(cache_root: str | os.PathLike | None = None, config: SyntheticConfig | None = None) -> DatasetPaths:
    """The generated dataset for `config` (default config when None), from the cache folder
    `<cache_root>/synthetic-<config hash>`, generated there first when absent. Generation happens in a
    private temporary folder renamed into place, so concurrent callers never see a half-written dataset."""
    config = config or SyntheticConfig()
    cache_root = Path(cache_root) if cache_root is not None else default_cache_root()
    target = cache_root / f"synthetic-{config.hash()}"
    if (target / MANIFEST).is_file():
        paths = DatasetPaths.open(target)
        if paths.matches_manifest():
            return paths
        import sys

        print(f"[vsbench] {target}: files differ from the generation manifest; regenerating the dataset",
              file=sys.stderr, flush=True)
    cache_root.mkdir(parents=True, exist_ok=True)
    staging = cache_root / f".{target.name}.{uuid.uuid4().hex}.tmp"
    try:
        _write_dataset(staging, config)
        if target.exists() and not (target / MANIFEST).is_file():
            shutil.rmtree(target)  # a leftover without a manifest is incomplete by construction
        elif target.exists() and not DatasetPaths.open(target).matches_manifest():
            shutil.rmtree(target)  # modified since generation: replaced by the fresh copy
        try:
            os.rename(staging, target)
        except OSError:
            if not (target / MANIFEST).is_file():  # not a concurrent winner: a real failure
                raise
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)
    return DatasetPaths.open(target)


def main(argv: list[str] | None = None) -> int:
    """`python -m bench.datasets.synthetic [--root DIR] [--seed N] [--num-train N] [--num-val N]`:
    generate (into DIR, else the cache) and print the paths, counts, fingerprint and wall time."""
    import argparse
    import time

    parser = argparse.ArgumentParser(prog="python -m bench.datasets.synthetic", description=main.__doc__)
    parser.add_argument("--root", type=Path, default=None, help="output folder (default: the cache)")
    parser.add_argument("--seed", type=int, default=SyntheticConfig.seed)
    parser.add_argument("--num-train", type=int, default=SyntheticConfig.num_train)
    parser.add_argument("--num-val", type=int, default=SyntheticConfig.num_val)
    args = parser.parse_args(argv)
    config = SyntheticConfig(seed=args.seed, num_train=args.num_train, num_val=args.num_val)
    start = time.perf_counter()
    paths = generate_dataset(args.root, config) if args.root else default_dataset(config=config)
    elapsed = time.perf_counter() - start
    print(f"root         {paths.root}\nfingerprint  {paths.fingerprint}\nwall time    {elapsed:.2f} s")
    for split in SPLITS:
        data = read_json(paths.instances_json(split))
        print(f"{split:5s}        {len(data['images'])} images, {len(data['annotations'])} instances")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
