"""Real peers as implementations under test: adapters that CALL a library and never fix it.

Each adapter maps the parts of a case family (cases/interface/) onto a library's own classes and functions; a
part the library has no honest counterpart for is simply not provided (the cases needing it fail naming it).
Pieces outside the family's interface that would need a download (pretrained weights, a tokenizer's vocabulary,
the frozen image encoder) are replaced by stand-ins that pass the case's own inputs through, and say so.
Expected failures: cases/adapters/expected_failures/<name>.txt, one case per line with its reason.

- `transformers_blip2:TRANSFORMERS_BLIP2`: transformers' BLIP-2 (Blip2ForImageTextRetrieval), default test env.
- `lavis:LAVIS`: salesforce-lavis 1.0.2 (Blip2Qformer, BertLMHeadModel, concat_all_gather), `tox -e lavis`.
"""
