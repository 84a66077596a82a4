"""Family `pix2seqv2`: the Pix2SeqV2 multi-task codecs on one shared vocabulary.

Conventions (shared by every part):
- One id space: coordinate bins 0..num_bins-1, class tokens num_bins..num_bins+C-1, BOS, EOS, PAD,
  one task token per task (detection, segmentation, captioning, keypoint) that replaces BOS at
  position 0, an invisible-keypoint token, a polygon separator, then caption words from `word_start`.
- Coordinates are pixels of an image of size (width, height); x is normalised by the width, y by
  the height, clamped to the image, quantised to bins. Boxes are xyxy.
- Segmentation and keypoint sequences start with a 6-token prompt: the task token and the box prompt
  (x0, y0, x1, y1, class); detection and captioning prompts are the task token alone.
- Part names differ from the pix2seq family's, so one object may implement both families.
- Decoders take a row as a model emits it (task token first, EOS, maybe PAD or anything after) and
  never raise on token values.
"""

from cases.interface import Family

FAMILY = Family(
    name="pix2seqv2",
    reference_spec="reference.pix2seqv2.codecs:PIX2SEQV2",
    parts={
        "token_layout": "dict of ids: num_bins, num_classes, max_len (longest sequence of any task), bos, "
                        "eos, pad, the task tokens detection, segmentation, captioning, keypoint, invisible "
                        "(both coordinates of an unlabelled keypoint), separator (between polygons), "
                        "word_start (every caption word id is >= it)",
        "prompt": "prompt(task, box=None, label=None, width=1, height=1) -> list[int]: the tokens given "
                  "before generation",
        "encode_detection": "encode_detection(boxes (N,4), labels (N,), width, height) -> list[int]",
        "decode_detection": "decode_detection(tokens, width, height) -> {'boxes' (K,4) pixels, 'labels', 'scores'}",
        "encode_segmentation": "encode_segmentation(box, label, polygons [flat xy lists], width, height, "
                               "seed=None) -> list[int]; seed None keeps the start vertex, else a seeded "
                               "random start vertex per polygon",
        "decode_segmentation": "decode_segmentation(tokens, width, height) -> {'box', 'label', 'polygons' "
                               "[flat xy lists in pixels, each >= 3 points]}",
        "polygons_to_rle": "polygons_to_rle(polygons, width, height) -> COCO RLE {'size': [h, w], 'counts'}",
        "encode_keypoints": "encode_keypoints(box, label, keypoints (K,3) or flat x,y,v, width, height) -> list[int]",
        "decode_keypoints": "decode_keypoints(tokens, width, height, num_keypoints=None) -> {'box', 'label', "
                            "'keypoints' (K,3) float x, y, v with v = 2 visible, (0, 0, 0) not labelled}",
        "build_words": "build_words(captions) -> an opaque word list built from training captions",
        "encode_caption": "encode_caption(words, caption) -> list[int]; unknown words -> one UNK word id",
        "decode_caption": "decode_caption(words, tokens) -> str, words joined by single spaces",
        "target_mask": "target_mask(tokens (B,T) long) -> (B,T-1) bool: True where target tokens[:,1:] is "
                       "supervised (after the prompt, not PAD)",
    },
)
