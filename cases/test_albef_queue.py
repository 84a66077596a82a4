"""The feature queue (ALBEF / BLIP, after MoCo; salesforce/ALBEF models/model_pretrain.py and salesforce/BLIP
models/blip_pretrain.py, blip_retrieval.py `_dequeue_and_enqueue`): one FIFO of momentum keys, image features, text
features and image ids enqueued together.

- It holds only real keys: the public code initialises it with random unit vectors (`torch.randn` then normalise),
  which serve as ITC negatives and distillation targets until the queue has been overwritten once.
- After any sequence of updates it holds exactly the last N keys.
- `assert self.queue_size % batch_size == 0` crashes a run when the gathered batch does not divide the queue (the
  smaller last batch of an epoch, an uneven world size: BLIP #101); a queue may instead wrap around, or refuse with a
  clear error naming both sizes."""

import pytest
import torch
from hypothesis import example, given, strategies as st

from cases.interface.albef import unit_rows

pytestmark = [pytest.mark.albef]
E = 8
FIFO = pytest.mark.case(stands_for="the queue holds exactly the last N keys (FIFO, one pointer, ids with features)",
                        stage="feature queue update")
DIVIDES = pytest.mark.case(stands_for="queue_size % batch_size == 0 asserted: a smaller or larger batch crashes "
                                      "(BLIP #101)", stage="feature queue update")


def push(queue, sizes, start_id=0):
    """Enqueue batches of the given sizes with unique ids; returns every key pushed, in order: (ids, img, txt)."""
    ids, imgs, txts = [], [], []
    next_id = start_id
    for i, B in enumerate(sizes):
        batch_ids = torch.arange(next_id, next_id + B)
        img, txt = unit_rows(B, E, 1000 + i), unit_rows(B, E, 2000 + i)
        queue.enqueue(img, txt, batch_ids)
        ids.append(batch_ids)
        imgs.append(img)
        txts.append(txt)
        next_id += B
    return torch.cat(ids), torch.cat(imgs), torch.cat(txts)


def assert_holds_last(queue, size, pushed):
    ids, imgs, txts = pushed
    q_img, q_txt, q_ids = queue.contents()
    q_ids = torch.as_tensor(q_ids).reshape(-1)
    keep = min(size, len(ids))
    expected = ids[len(ids) - keep:]
    assert sorted(q_ids.tolist()) == sorted(expected.tolist()), \
        f"queue of {size} holds ids {sorted(q_ids.tolist())}, expected the last {keep}: {expected.tolist()}"
    for row, key_id in enumerate(q_ids.tolist()):
        j = int((ids == key_id).nonzero())
        torch.testing.assert_close(torch.as_tensor(q_img)[row].float(), imgs[j])
        torch.testing.assert_close(torch.as_tensor(q_txt)[row].float(), txts[j])


def held_or_clear_error(api, size, sizes):
    queue = api.make_queue(size, E)
    try:
        pushed = push(queue, sizes)
    except ValueError as err:  # a queue may refuse a batch that does not divide it, saying so
        message = str(err)
        assert str(size) in message and any(str(b) in message for b in sizes), \
            f"the error does not name the queue size {size} and the batch size: {message!r}"
        return
    assert_holds_last(queue, size, pushed)


@FIFO
def test_a_fresh_queue_holds_no_key(api):
    queue = api.make_queue(6, E)
    _, _, ids = queue.contents()
    assert torch.as_tensor(ids).numel() == 0, \
        f"a queue nothing was enqueued to holds {torch.as_tensor(ids).numel()} keys (random initial vectors?)"


@FIFO
@given(batch=st.integers(1, 4), factor=st.integers(1, 4), steps=st.integers(1, 7))
def test_queue_holds_exactly_the_last_keys(api, batch, factor, steps):
    size = batch * factor  # divisible: every implementation must hold the last keys here
    queue = api.make_queue(size, E)
    assert_holds_last(queue, size, push(queue, [batch] * steps))


@DIVIDES
@given(size=st.integers(2, 12), sizes=st.lists(st.integers(1, 7), min_size=1, max_size=5))
@example(size=8, sizes=[4, 4, 3, 4])  # the smaller last batch of an epoch
@example(size=6, sizes=[4, 4, 4])  # 6 % 4 != 0: writes must wrap around the end
def test_queue_size_need_not_divide_the_batch_size(api, size, sizes):
    held_or_clear_error(api, size, sizes)


@DIVIDES
def test_a_batch_larger_than_the_queue_keeps_its_last_keys(api):
    held_or_clear_error(api, 4, [6])
