"""Datasets: the generated shapes dataset (the embedded default) and readers for COCO and Pascal VOC.

    from bench.datasets import default_dataset, CocoDetection, read_captions
    paths = default_dataset()                       # generated once into the cache, then reused
    ds = CocoDetection(paths.images_dir("val"), paths.instances_json("val"))
    image, target = ds[0]                           # uint8 (H, W, 3) RGB, dict (see bench.datasets.coco)
    captions = read_captions(paths.captions_json("val"))   # {image id: [5 captions]}
"""

from bench.datasets.coco import CocoDetection, coco_from_dict, load_coco_json, read_captions, read_image
from bench.datasets.synthetic import (
    DEFAULT_PALETTE,
    GENERATOR_VERSION,
    DatasetPaths,
    SyntheticConfig,
    default_cache_root,
    default_dataset,
    generate_dataset,
)
from bench.datasets.synthetic_shapes import KEYPOINT_NAMES, KEYPOINT_SIGMAS, KEYPOINT_SKELETON, SHAPES
from bench.datasets.voc import VOC_CLASSES, VocDetection

__all__ = [
    "CocoDetection", "coco_from_dict", "load_coco_json", "read_captions", "read_image",
    "DEFAULT_PALETTE", "GENERATOR_VERSION", "DatasetPaths", "SyntheticConfig", "default_cache_root",
    "default_dataset", "generate_dataset", "KEYPOINT_NAMES", "KEYPOINT_SIGMAS", "KEYPOINT_SKELETON", "SHAPES",
    "VOC_CLASSES", "VocDetection",
]
