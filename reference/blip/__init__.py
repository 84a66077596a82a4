"""BLIP reference (docs/design.md §4): `model` (unimodal / image-grounded text encoder and the image-grounded decoder
sharing all but self-attention; ITC / ITM from ALBEF, LM), `generate` (nucleus sampling and greedy captioning),
`capfilt` (the ITM filter and dataset bootstrapping), `api` (the parts of the `blip` case family).
"""
