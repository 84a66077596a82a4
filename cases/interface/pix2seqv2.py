"""Family `pix2seqv2`: the Pix2SeqV2 multi-task codecs, generation and results export on one vocabulary.

Conventions (shared by every part):
- One id space: coordinate bins 0..num_bins-1, class tokens num_bins..num_bins+C-1, BOS, EOS, PAD,
  one task token per task (detection, segmentation, captioning, keypoint) that replaces BOS at
  position 0, an invisible-keypoint token, a polygon separator, then caption words from `word_start`.
- Coordinates are pixels of an image of size (width, height); x is normalised by the width, y by
  the height, clamped to the image, quantised to bins. Boxes are xyxy. Inputs may be Python lists,
  ndarrays or tensors, of int, float32 or float64.
- Segmentation and keypoint sequences start with a 6-token prompt: the task token and the box prompt
  (x0, y0, x1, y1, class); detection and captioning prompts are the task token alone.
- Part names differ from the pix2seq family's (generate_task, not generate), so one object may implement
  both families.
- Decoders take a row as a model emits it (task token first, EOS, maybe PAD or anything after) as
  integer ids and never raise on token values.
- Label i is the i-th category of the COCO ground truth `gt` sorted by category id.

The stand-in model of `generate_task` is the pix2seq family's (cases/interface/pix2seq.py):
`predict(images, prefix (B, t) long) -> logits (B, V)`, V >= word_start; ids from word_start on are
caption words.
"""

from cases.interface import Family

FAMILY = Family(
    name="pix2seqv2",
    reference_spec="bench.implementations:PIX2SEQV2",
    parts={
        "token_layout": "dict of ids: num_bins, num_classes, max_len (longest sequence of any task), bos, "
                        "eos, pad, the task tokens detection, segmentation, captioning, keypoint, invisible "
                        "(both coordinates of an unlabelled keypoint), separator (between polygons), "
                        "word_start (every caption word id is >= it)",
        "prompt": "prompt(task, box=None, label=None, width=1, height=1) -> list[int]: the tokens given "
                  "before generation",
        "encode_detection": "encode_detection(boxes (N,4), labels (N,), width, height) -> list[int]",
        "decode_detection": "decode_detection(tokens, width, height, probs=None) -> {'boxes' (K,4) pixels, "
                            "'labels', 'scores'}; score = probs at the object's class token (1 without probs)",
        "encode_segmentation": "encode_segmentation(box, label, polygons [flat xy lists], width, height, "
                               "seed=None) -> list[int] of at most max_len tokens; seed None keeps the start "
                               "vertex, else a seeded random start vertex per polygon",
        "decode_segmentation": "decode_segmentation(tokens, width, height) -> {'box', 'label', 'polygons' "
                               "[flat xy lists in pixels, each >= 3 points]}",
        "polygons_to_rle": "polygons_to_rle(polygons, width, height) -> COCO RLE {'size': [h, w], 'counts'}",
        "encode_keypoints": "encode_keypoints(box, label, keypoints (K,3) or flat x,y,v, width, height) -> list[int]",
        "decode_keypoints": "decode_keypoints(tokens, width, height, num_keypoints=None) -> {'box', 'label', "
                            "'keypoints' (K,3) float x, y, v with v = 2 visible, (0, 0, 0) not labelled}; K = "
                            "the pairs in the row (any K), or num_keypoints",
        "build_words": "build_words(captions) -> an opaque word list built from training captions",
        "encode_caption": "encode_caption(words, caption) -> list[int]; unknown words -> one UNK word id",
        "decode_caption": "decode_caption(words, tokens) -> str, words joined by single spaces; tokens that "
                          "are not words make no word",
        "target_mask": "target_mask(tokens (B,T) long) -> (B,T-1) bool: True where target tokens[:,1:] is "
                       "supervised (after the prompt, not PAD)",
        "generate_task": "generate_task(predict, images, task, prompts (B,P) long, max_new_tokens=None, num_keypoints=17) "
                    "-> (tokens (B,P+T) long, token_probs (B,P+T)): greedy decoding driven by the stand-in "
                    "`predict`; T <= max_new_tokens (default max_len - P); each position holds only a token of "
                    "the kind the task allows there (keypoint: exactly 2*num_keypoints coordinates or invisible "
                    "tokens, then EOS); a row ends at its EOS; token_probs[b, p] = probability of tokens[b, p]",
        "export_results": "export_results(task, image_ids, predictions, gt) -> list of result dicts: "
                          "detection: predictions[i] a detection dict -> one {image_id, category_id, bbox "
                          "[x,y,w,h], score} per object; segmentation: a list of {'label', 'score', 'polygons'} "
                          "-> {image_id, category_id, segmentation RLE, score}; keypoint: a list of {'label', "
                          "'score', 'keypoints' (K,3)} -> {image_id, category_id, keypoints [x,y,v]*K, score}; "
                          "captioning: a str -> {image_id, caption}",
        "evaluate_results": "evaluate_results(task, gt, results) -> dict of metrics: COCO AP, AP50, ... "
                            "(bbox / segm / keypoints with pycocotools' 17 COCO sigmas) or BLEU-1..BLEU-4 "
                            "(coco-caption, captions lower-cased and split into words; gt a COCO captions dict)",
    },
)


def reference_like(layout: dict):
    """The reference of this family on an implementation's `token_layout`: what the cases build
    well-formed inputs with, so that a case exercises only the one stage it tests."""
    from cases.interface import load_implementation

    return load_implementation(FAMILY.reference_spec).with_layout(dict(layout))
