"""Pix2SeqV2 (Chen et al., 2022, "A Unified Sequence Interface for Vision Tasks"): detection,
instance segmentation, keypoints and captioning as token sequences on one shared vocabulary, each
task selected by a task token that replaces BOS. Built on reference.pix2seq's tokenizer."""

from reference.pix2seqv2.captioning import WordList, decode_caption, encode_caption, split_words
from reference.pix2seqv2.detection import decode_detection, encode_detection
from reference.pix2seqv2.keypoints import decode_keypoints, encode_keypoints
from reference.pix2seqv2.loss import prompt_lengths, sequence_loss, target_mask
from reference.pix2seqv2.prompt import task_prompt
from reference.pix2seqv2.segmentation import decode_segmentation, encode_segmentation, polygons_to_rle
from reference.pix2seqv2.vocab import COCO, TASKS, TaskVocabulary

__all__ = ["COCO", "TASKS", "TaskVocabulary", "WordList", "decode_caption", "decode_detection",
           "decode_keypoints", "decode_segmentation", "encode_caption", "encode_detection", "encode_keypoints",
           "encode_segmentation", "polygons_to_rle", "prompt_lengths", "sequence_loss", "split_words",
           "target_mask", "task_prompt"]
