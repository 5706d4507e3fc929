"""State dicts: numpy arrays survive a checkpoint exactly, unsupported values are named when
saved, and the content digest sees every bit."""

from __future__ import annotations

import io
from collections import OrderedDict

import numpy as np
import pytest
import torch

from cl.core.state import decode_state, encode_state, state_digest
from cl.errors import ProtocolError


def roundtrip(state):
    buf = io.BytesIO()
    torch.save(encode_state(state), buf)
    buf.seek(0)
    return decode_state(torch.load(buf, weights_only=True))


def test_numpy_arrays_and_scalars_come_back_with_their_dtype_and_values():
    rng = np.random.default_rng(0)
    state = {
        "means": {3: rng.normal(size=(2, 5)).astype(np.float32)},
        "counts": np.arange(4, dtype=np.uint16),
        "flags": np.array([True, False]),
        "scale": np.float32(0.1),
        "step": np.int64(7),
        "grid": [np.array(2.5), (1, "a", None)],
        "ordered": OrderedDict(w=torch.ones(2, dtype=torch.bfloat16)),
        "tags": {"x", "y"},
    }
    back = roundtrip(state)
    np.testing.assert_array_equal(back["means"][3], state["means"][3])
    assert back["means"][3].dtype == np.float32 and back["counts"].dtype == np.uint16
    assert back["flags"].dtype == np.bool_ and back["grid"][0].shape == ()
    assert type(back["scale"]) is np.float32 and back["scale"] == state["scale"]
    assert type(back["step"]) is np.int64 and back["grid"][1] == (1, "a", None)
    assert isinstance(back["ordered"], OrderedDict) and back["ordered"]["w"].dtype == torch.bfloat16
    assert back["tags"] == {"x", "y"}
    assert state_digest(encode_state(back)) == state_digest(encode_state(state))


@pytest.mark.parametrize("state, match", [
    ({"fn": lambda x: x}, r"S.state_dict\(\)\['fn'\] holds a function"),
    ({"net": torch.nn.Linear(2, 2)}, r"\['net'\] holds a torch.nn.modules.linear.Linear"),
    ({"a": [1, object()]}, r"\['a'\]\[1\] holds a builtins.object"),
    ({"names": np.array(["a", None], dtype=object)}, r"numpy array of dtype object.*tolist"),
    ({(1, 2): 3}, r"has a key \(1, 2\) of type tuple"),
    ({"__cl_numpy__": 1}, r"reserved key"),
    ({"d": __import__("collections").defaultdict(int)}, r"holds a collections.defaultdict"),
])
def test_unsupported_values_are_named_by_path_when_saved(state, match):
    with pytest.raises(ProtocolError, match=match):
        encode_state(state, "S.state_dict()")


def test_the_digest_changes_with_any_value_bit_or_structure():
    base = {"w": torch.arange(6, dtype=torch.float64).reshape(2, 3), "n": 3, "s": "a"}
    digest = state_digest(base)
    flipped = base["w"].clone()
    flipped.view(-1).view(torch.uint8)[5] ^= 1
    variants = [
        {**base, "w": flipped}, {**base, "w": base["w"].float()}, {**base, "w": base["w"].reshape(3, 2)},
        {**base, "n": 4}, {**base, "n": 3.0}, {**base, "s": "b"}, {**base, "extra": None},
        {"n": 3, "w": base["w"], "s": "a"},
    ]
    assert all(state_digest(v) != digest for v in variants)
    assert state_digest({"w": base["w"].clone(), "n": 3, "s": "a"}) == digest


def test_set_digests_do_not_depend_on_iteration_order():
    assert state_digest({"a", "b", "c"}) == state_digest({"c", "b", "a"})
