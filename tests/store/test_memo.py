"""mimax.store.memo: results keyed by the bytes of their inputs, shared through a folder."""

from __future__ import annotations

import torch

from mimax.store.memo import recall, tensor_key


def test_tensor_key_follows_shape_dtype_bytes_and_options():
    a = torch.arange(6, dtype=torch.float32)
    key = tensor_key((a,), {"k": 1})
    assert key == tensor_key((a.clone(),), {"k": 1})
    for other in (tensor_key((a.view(2, 3),), {"k": 1}), tensor_key((a.double(),), {"k": 1}),
                  tensor_key((a + 1e-7 * a.max(),), {"k": 1}), tensor_key((a,), {"k": 2}),
                  tensor_key((a[:3], a[3:]), {"k": 1}), tensor_key((a.bfloat16(),), {"k": 1})):
        assert other != key


def test_recall_computes_once_per_key_and_survives_a_torn_entry(tmp_path):
    calls = []
    a = torch.arange(4.0)

    def compute():
        calls.append(1)
        return {"accuracy": 0.25 * len(calls)}

    assert recall(None, (a,), {}, compute) == {"accuracy": 0.25}
    assert recall(None, (a,), {}, compute) == {"accuracy": 0.5}  # no folder: always computed
    calls.clear()
    assert recall(tmp_path, (a,), {}, compute) == {"accuracy": 0.25}
    assert recall(tmp_path, (a,), {}, compute) == {"accuracy": 0.25} and len(calls) == 1  # read back
    assert recall(tmp_path, (a,), {"k": 1}, compute) == {"accuracy": 0.5} and len(calls) == 2  # other options
    entry = tmp_path / f"{tensor_key((a,), {})}.json"
    entry.write_text('{"accur')  # torn (not by mimax's atomic writes): computed again
    assert recall(tmp_path, (a,), {}, compute) == {"accuracy": 0.75}
    assert recall(tmp_path, (a,), {}, compute) == {"accuracy": 0.75} and len(calls) == 3
