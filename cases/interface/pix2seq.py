"""Family `pix2seq`: a Pix2Seq token pipeline, cut at the stage boundaries of the public port.

Conventions (shared by every part):
- Vocabulary (DESIGN.md §3): coordinate bins 0..num_bins-1, class tokens num_bins..num_bins+C-1,
  then BOS, EOS, PAD. A sequence is [BOS, (xmin, ymin, xmax, ymax, class) * k, EOS].
- Boxes given to `encode` are xyxy in pixels of an image of size (width, height), any numeric dtype,
  list or ndarray, shape (N, 4); labels are class indices in [0, C). Label i is the i-th category of
  the COCO ground truth sorted by category id.
- A detection is a dict with `boxes` (K, 4) float xyxy pixels, `labels` (K,) int, `scores` (K,) float.
- `gt` is a COCO-format dict: images (id, width, height), annotations (id >= 1, image_id,
  category_id, bbox xywh, area, iscrowd), categories (id, name).
"""

from cases.interface import Family

FAMILY = Family(
    name="pix2seq",
    reference_spec="bench.implementations:PIX2SEQ",
    parts={
        "num_bins": "int: number of coordinate bins",
        "num_classes": "int: number of classes C",
        "max_len": "int: sequence length, BOS and EOS included; collate pads to exactly this width",
        "bos": "int: begin-of-sequence token id",
        "eos": "int: end-of-sequence token id",
        "pad": "int: padding token id",
        "encode": "encode(boxes, labels, width, height) -> list[int]: one image's token sequence",
        "decode": "decode(tokens) -> (boxes (K,4) float xyxy in [0,1], labels (K,) int); "
                  "raises ValueError on a token of the wrong kind in a slot",
        "collate": "collate(sequences: list[list[int]]) -> LongTensor (B, max_len) padded with PAD",
        "postprocess": "postprocess(tokens (B,T) long, token_probs (B,T) float, sizes [(w,h)]*B) -> "
                       "list of detections, one per row; score = probability of the class token",
        "prediction_table": "prediction_table(image_ids, detections, gt) -> DataFrame with one row per "
                            "object: image_id, label, score, xmin, ymin, xmax, ymax",
        "evaluate": "evaluate(gt, table) -> dict of COCO metrics (AP, AP50, ...; None where undefined)",
    },
)
