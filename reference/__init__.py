"""Reference implementations: Pix2Seq, Pix2SeqV2, BLIP-2 Q-Former, the sigma-halving pyramid experiment.

Never imports `bench` or `cases`."""
