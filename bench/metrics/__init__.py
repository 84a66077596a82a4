"""Metrics: COCO detection evaluation (pycocotools), caption BLEU."""
