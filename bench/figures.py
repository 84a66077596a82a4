"""The report figures that show model outputs (matplotlib, Agg backend, nothing shown on screen).

    detection_samples(path, images, gt_targets, detections, class_names)      # reports/figures/detection_samples.png
    multitask_samples(path, data, outputs, class_names, keypoint_names)       # reports/figures/multitask_samples.png

Boxes are xyxy pixels; every outline and label has a dark stroke so it stays readable on any shape colour.
"""

from __future__ import annotations

import textwrap
from pathlib import Path
from typing import Sequence

import numpy as np

GT_COLOUR = "#39ff14"  # ground truth: bright green
PRED_COLOUR = "#ff2d55"  # predictions: red-pink
KEYPOINT_MARKERS = ("o", "^", "v", "<", ">", "s", "D", "P", "X", "*")  # centre, top, bottom, left, right, ...
KEYPOINT_COLOURS = ("#ffffff", "#00e5ff", "#ffd60a", "#ff4fd8", "#7cff4f", "#ff8c00", "#a0a0ff", "#00ff9c",
                    "#ff5050", "#c0c0c0")


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _stroke(width: float = 2.5):
    from matplotlib import patheffects

    return [patheffects.withStroke(linewidth=width, foreground="black")]


def _bare(ax, image: np.ndarray) -> None:
    ax.imshow(image)
    ax.set_xticks([])
    ax.set_yticks([])


def _box(ax, box, colour: str, text: str, fontsize: float, dashed: bool = False) -> None:
    """An outlined xyxy box with its label on a coloured tab at the top-left corner (inside when at the edge)."""
    plt = _pyplot()
    x0, y0, x1, y1 = (float(v) for v in box)
    ax.add_patch(plt.Rectangle((x0, y0), x1 - x0, y1 - y0, fill=False, ec=colour, lw=1.8, ls="--" if dashed else "-",
                               path_effects=_stroke(3.2)))
    height = ax.get_ylim()[0]  # imshow: (H - 0.5, -0.5)
    inside = y0 < 0.08 * height  # too close to the top for a tab above the box
    y = y0 if inside else y0 - 1
    step = 0.075 * height  # about one label's height
    taken = ax.__dict__.setdefault("_vsbench_labels", [])  # anchors of this panel's labels so far
    while any(abs(x0 - x) < 4 * step and abs(y - yy) < step for x, yy in taken):
        y += step  # a box on (nearly) the same spot: its label goes one line lower, inside the box
    taken.append((x0, y))
    ax.text(x0, y, text, fontsize=fontsize, color="black", va="top" if inside or y > y0 else "bottom",
            bbox=dict(facecolor=colour, edgecolor="none", alpha=0.85, pad=1.0), clip_on=True)


def detection_samples(path: Path, images: np.ndarray, gt_targets: Sequence[dict], detections: Sequence[dict],
                      class_names: Sequence[str], count: int = 8, pairs_per_row: int = 2) -> Path:
    """Ground truth (outline, class) beside the predictions (box, class, score) of each image, two panels per
    image, `pairs_per_row` images per row. images (N, H, W, 3) uint8; gt_targets[i]: {"boxes" (G, 4) xyxy,
    "labels" (G,), "image_id"}; detections[i]: {"boxes" (D, 4) xyxy, "labels" (D,), "scores" (D,)}."""
    from matplotlib.patches import Patch

    plt = _pyplot()
    count = min(count, len(images), len(gt_targets), len(detections))
    rows = max(1, -(-count // pairs_per_row))
    fig, axes = plt.subplots(rows, 2 * pairs_per_row, figsize=(2.9 * 2 * pairs_per_row, 3.05 * rows + 0.7),
                             squeeze=False, layout="constrained")
    for k in range(rows * pairs_per_row):
        gt_ax, pred_ax = axes[k // pairs_per_row, 2 * (k % pairs_per_row):2 * (k % pairs_per_row) + 2]
        if k >= count:
            gt_ax.axis("off")
            pred_ax.axis("off")
            continue
        target, det = gt_targets[k], detections[k]
        for ax in (gt_ax, pred_ax):
            _bare(ax, images[k])
        for box, label in zip(target["boxes"], target["labels"]):
            _box(gt_ax, box, GT_COLOUR, class_names[int(label)], 8)
        for box, label, score in zip(det["boxes"], det["labels"], det["scores"]):
            _box(pred_ax, box, PRED_COLOUR, f"{class_names[int(label)]} {float(score):.2f}", 8)
        gt_ax.set_title(f"image {target['image_id']}: ground truth ({len(target['labels'])})", fontsize=9.5)
        pred_ax.set_title(f"predictions ({len(det['labels'])})", fontsize=9.5)
    handles = [Patch(facecolor="none", edgecolor=GT_COLOUR, lw=2, label="ground truth: outline + class"),
               Patch(facecolor="none", edgecolor=PRED_COLOUR, lw=2, label="prediction: box + class and score")]
    fig.legend(handles=handles, loc="outside upper center", ncols=2, fontsize=10, frameon=False)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return Path(path)


def multitask_samples(path: Path, data, outputs: dict, class_names: Sequence[str], keypoint_names: Sequence[str],
                      count: int = 4) -> Path:
    """count rows x 4 panels for the first images of a Pix2SeqV2 run: detections (box, class, score); masks
    and keypoints from detected-box prompts (one marker and colour per keypoint, legend on top); the generated
    caption above the first reference. data: .images (N, H, W, 3), .captions [N][str]; outputs: run_model's
    {"num_images", "detection", "segmentation_det", "keypoint_det", "captioning"}."""
    from matplotlib.lines import Line2D
    from pycocotools import mask as mask_utils

    plt = _pyplot()
    if len(keypoint_names) > len(KEYPOINT_MARKERS):
        raise ValueError(f"keypoint_names: at most {len(KEYPOINT_MARKERS)} keypoints can be drawn, got "
                         f"{len(keypoint_names)}")
    count = min(count, outputs["num_images"])
    fig, axes = plt.subplots(count, 4, figsize=(13, 3.2 * count + 0.8), squeeze=False, layout="constrained",
                             gridspec_kw={"width_ratios": [1, 1, 1, 1.25]})
    instance_colours = plt.get_cmap("tab10")
    for b in range(count):
        image = data.images[b]
        for ax in axes[b, :3]:
            _bare(ax, image)
        det = outputs["detection"][b]
        for box, label, score in zip(det["boxes"], det["labels"], det["scores"]):
            _box(axes[b, 0], box, PRED_COLOUR, f"{class_names[int(label)]} {float(score):.2f}", 8.5)
        overlay = np.zeros((*image.shape[:2], 4))
        for k, r in enumerate(r for r in outputs.get("segmentation_det", []) if r["image"] == b):
            overlay[mask_utils.decode(r["rle"]).astype(bool)] = (*instance_colours(k % 10)[:3], 0.6)
        axes[b, 1].imshow(overlay)
        for r in (r for r in outputs.get("keypoint_det", []) if r["image"] == b):
            kp = np.asarray(r["keypoints"], dtype=np.float64).reshape(-1, 3)
            for j in range(min(len(kp), len(keypoint_names))):
                if kp[j, 2] > 0:
                    axes[b, 2].scatter(kp[j, 0], kp[j, 1], s=46, marker=KEYPOINT_MARKERS[j], c=KEYPOINT_COLOURS[j],
                                       edgecolors="black", linewidths=0.9, zorder=3)
        text_ax = axes[b, 3]
        text_ax.axis("off")
        reference = data.captions[b][0] if data.captions[b] else "(none)"
        text_ax.text(0.0, 0.95, "generated:\n" + textwrap.fill(outputs["captioning"][b], 34), fontsize=10,
                     va="top", ha="left", transform=text_ax.transAxes, weight="bold")
        text_ax.text(0.0, 0.45, "first reference:\n" + textwrap.fill(reference, 34), fontsize=10, va="top",
                     ha="left", transform=text_ax.transAxes, color="#333333")
    for ax, title in zip(axes[0], ("detection (class, score)", "masks (detected-box prompts)",
                                   "keypoints (detected-box prompts)", "caption")):
        ax.set_title(title, fontsize=11)
    handles = [Line2D([], [], ls="none", marker=KEYPOINT_MARKERS[j], markersize=8, markerfacecolor=KEYPOINT_COLOURS[j],
                      markeredgecolor="black", label=name) for j, name in enumerate(keypoint_names)]
    fig.legend(handles=handles, loc="outside upper center", ncols=len(handles), fontsize=10, frameon=False,
               title="keypoints", title_fontsize=10)
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return Path(path)
