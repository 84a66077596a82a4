"""The MoCo-style feature queue of ALBEF / BLIP: the momentum encoders' recent keys, used as extra ITC negatives.

One FIFO ring buffer with ONE pointer holds three aligned columns: image features, text features and the image ids
of the pairs they came from (so that captions of the same image in the queue can be recognised as positives).

- The queue starts EMPTY and holds only real keys: `contents()` returns the keys enqueued so far (at most `size`),
  never placeholders. (The public code fills a fresh queue with random unit vectors that act as negatives until
  they are overwritten.)
- After any sequence of `enqueue` calls it holds exactly the last `min(size, total enqueued)` keys.
- The queue size need NOT divide by the batch size: writes wrap around the end of the buffer, batches of any size
  (the smaller last batch of an epoch included) are accepted, and a batch larger than the queue keeps its last
  `size` keys. (The public code asserts `queue_size % batch_size == 0` and crashes on such a batch, BLIP #101.)
- `size = 0` is a valid queue that never holds anything (ITC with in-batch negatives only).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn


@dataclass
class FeatureQueueConfig:
    size: int = 256  # keys kept (0 = no queue)
    embed_dim: int = 32  # width of the ITC features

    def __post_init__(self) -> None:
        if self.size < 0 or self.embed_dim < 1:
            raise ValueError(f"queue size must be >= 0 and embed_dim >= 1, got size={self.size}, "
                             f"embed_dim={self.embed_dim}")


class FeatureQueue(nn.Module):
    """Ring buffer of (image feature, text feature, image id) keys; buffers are saved in the state dict."""

    def __init__(self, config: FeatureQueueConfig) -> None:
        super().__init__()
        self.config = config
        N, E = config.size, config.embed_dim
        self.register_buffer("image", torch.zeros(N, E))
        self.register_buffer("text", torch.zeros(N, E))
        self.register_buffer("ids", torch.full((N,), -1, dtype=torch.long))
        self.register_buffer("ptr", torch.zeros((), dtype=torch.long))  # next slot to write
        self.register_buffer("count", torch.zeros((), dtype=torch.long))  # keys held (<= size)

    def __len__(self) -> int:
        return int(self.count)

    @torch.no_grad()
    def enqueue(self, image_feats: torch.Tensor, text_feats: torch.Tensor, image_ids: torch.Tensor) -> None:
        """Append B keys: image_feats (B, E), text_feats (B, E), image_ids (B,); the oldest keys make room."""
        image_ids = torch.as_tensor(image_ids, device=self.ids.device).reshape(-1)
        B, E = image_feats.shape[0], self.config.embed_dim
        if image_feats.shape != (B, E) or text_feats.shape != (B, E) or image_ids.shape != (B,):
            raise ValueError(f"enqueue expects image_feats ({B}, {E}), text_feats ({B}, {E}) and image_ids ({B},); "
                             f"got {tuple(image_feats.shape)}, {tuple(text_feats.shape)}, {tuple(image_ids.shape)}")
        N = self.config.size
        if N == 0 or B == 0:
            return
        if B >= N:  # only the last N keys survive; store them oldest first
            image_feats, text_feats, image_ids = image_feats[-N:], text_feats[-N:], image_ids[-N:]
            self.ptr.zero_()
            B = N
        slots = (self.ptr + torch.arange(B, device=self.ids.device)) % N  # wraps around the end
        self.image[slots] = image_feats.detach().to(self.image.dtype)
        self.text[slots] = text_feats.detach().to(self.text.dtype)
        self.ids[slots] = image_ids.to(self.ids.dtype)
        self.ptr.copy_((self.ptr + B) % N)
        self.count.copy_(torch.clamp(self.count + B, max=N))

    def contents(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """The keys held, oldest first: (image (n, E), text (n, E), ids (n,)), n = len(self); copies."""
        n, N = int(self.count), self.config.size
        if n < N:
            order = torch.arange(n, device=self.ids.device)  # not yet wrapped: slots 0..n-1 in write order
        else:
            order = (self.ptr + torch.arange(N, device=self.ids.device)) % N
        return self.image[order].clone(), self.text[order].clone(), self.ids[order].clone()
