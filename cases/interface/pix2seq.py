"""Family `pix2seq`: a Pix2Seq token pipeline, cut at the stage boundaries of the public port.

Conventions (shared by every part):
- Vocabulary (docs/design.md §3): coordinate bins 0..num_bins-1, class tokens num_bins..num_bins+C-1,
  then BOS, EOS, PAD (vocabulary size V = num_bins + C + 3). A sequence is
  [BOS, (xmin, ymin, xmax, ymax, class) * k, EOS].
- Boxes given to `encode` are xyxy in pixels of an image of size (width, height), any numeric dtype
  (int, float32, float64), a Python list (maybe empty), an ndarray or a tensor, shape (N, 4); x is
  normalised by the width, y by the height. Labels are class indices in [0, C). Label i is the i-th
  category of the COCO ground truth sorted by category id.
- Token inputs are integer ids (list, ndarray or LongTensor).
- A detection is a dict with `boxes` (K, 4) float xyxy pixels, `labels` (K,) int, `scores` (K,) float,
  as a list, ndarray or tensor.
- `gt` is a COCO-format dict: images (id, width, height), annotations (id >= 1, image_id,
  category_id, bbox xywh, area, iscrowd), categories (id, name).

The stand-in model of `generate` (the case supplies it, so that it sets each step's distribution):
    predict(images, prefix) -> logits
  `images` is what the case passed to `generate` (anything of length B; row b of the prefix belongs to
  images[b]), `prefix` a LongTensor (B, t) of the tokens so far (BOS first), `logits` a float tensor
  (B, V): the next token's unnormalised log-probabilities for every row. It is the port's
  `model.predict(x, batch_preds)`; a re-implementation wraps its own decoding loop around it.
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
        "encode": "encode(boxes, labels, width, height) -> list[int]: one image's token sequence, at most "
                  "max_len tokens (the first (max_len - 2) // 5 objects)",
        "decode": "decode(tokens) -> (boxes (K,4) float xyxy in [0,1], labels (K,) int); raises ValueError "
                  "on a token of the wrong kind in a slot",
        "collate": "collate(sequences: list[list[int]]) -> LongTensor (B, max_len) padded with PAD; a "
                   "sequence of more objects than fit keeps its first whole objects",
        "generate": "generate(predict, images, max_new_tokens=None) -> (tokens LongTensor (B, 1+T) BOS first, "
                    "token_probs (B, 1+T)): greedy decoding driven by the stand-in `predict` (see above), "
                    "T <= max_new_tokens (default max_len - 1); each position holds only a token of the kind "
                    "it allows (slots 0-3 a coordinate, slot 4 a class, EOS at an object boundary); a row "
                    "ends at its EOS; token_probs[b, p] is the probability of tokens[b, p], so an object's "
                    "score (postprocess) is its class token's probability",
        "postprocess": "postprocess(tokens (B,T) long, token_probs (B,T) float, sizes [(w,h)]*B) -> "
                       "list of detections, one per row; score = probability of the class token",
        "prediction_table": "prediction_table(image_ids, detections, gt) -> DataFrame with one row per "
                            "object: image_id, label, score, xmin, ymin, xmax, ymax",
        "evaluate": "evaluate(gt, table) -> dict of metrics: at least AP50 (COCO AP at IoU 0.5; a VOC-style "
                    "mAP@0.5 is the usual stand-in); AP, AR100, ... when the implementation has them "
                    "(None where undefined)",
    },
)


def reference_like(impl):
    """The reference pipeline on `impl`'s vocabulary (num_bins, num_classes, max_len): what the cases
    build well-formed inputs with, so that a case exercises only the one stage it tests."""
    from cases.interface import load_implementation

    reference = load_implementation(FAMILY.reference_spec)
    return reference.with_layout(int(impl.num_bins), int(impl.num_classes), int(impl.max_len))
