"""Every model's training, on one shared loop (bench/training/loop.py: optimiser, schedule, seed, step loop
with progress and logging, resume state, checkpoint + JSON sidecar; its docstring is the API).

- detection.py: Pix2Seq on the generated dataset (`vsbench train detection`)
- multitask.py: Pix2SeqV2 multi-task and single-task baselines (`vsbench train-multitask`)
- qformer.py: the tiny BLIP-2 Q-Former, stage 1 (`vsbench train-qformer`)
"""
