"""ALBEF reference (docs/design.md §4): `model` (the tiny ALBEF: ITC with a momentum queue and distillation, ITM on
hard negatives, MLM), `momentum` (EMA encoders), `queue` (the FIFO feature queue), `contrastive` (ITC with the queue
and momentum distillation), `mlm` (masking and the distilled MLM loss), `text` (the BERT-style text / fusion
transformer, shared with BLIP), `image` (the trainable image encoder on frozen patch features), `api` (the parts of
the `albef` case family).
"""
