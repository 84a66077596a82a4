"""BLIP-2 Q-Former reference (docs/design.md §4): `qformer` (the model), `stage1` (ITC / ITM / ITG heads and the
stage-1 forward), `losses`, `sampler` (hard negatives), `captioner` (greedy / beam generation with the KV cache),
`retrieval` (ITC + ITM re-ranking, recall@K), `image_encoder` (the frozen patch encoder of the tiny model),
`tokenizer` (word level), `convert` (transformers state dicts), `api` (the parts of the `qformer` case family).
"""
