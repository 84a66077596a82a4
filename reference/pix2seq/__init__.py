"""Pix2Seq: object detection as a language task (Chen et al., 2022), with the public PyTorch port's
vocabulary layout and its published bugs fixed. Token pipeline: tokenizer -> collate -> model ->
generate -> postprocess -> prediction table."""

from reference.pix2seq.tokenizer import Vocabulary, decode_sequence, encode_objects

__all__ = ["Vocabulary", "encode_objects", "decode_sequence"]
