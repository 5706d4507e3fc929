"""What a ``state_dict`` may hold, and the content digest that makes checkpoints verifiable.

Checkpoints are read back with ``torch.load(weights_only=True)``, which
refuses anything but tensors and plain data: a state holding a lambda, a
custom object or a numpy array would save fine and then never load.
:func:`encode_state` therefore checks a state tree *when it is saved* and
names the first bad value by its path (``state['model']['fn']``):

- allowed leaves: ``torch.Tensor``, ``None``, ``bool``, ``int``, ``float``,
  ``str``, ``bytes``, ``torch.dtype``;
- allowed containers: ``dict``/``OrderedDict`` with ``str``/``int`` keys,
  ``list``, ``tuple`` (``torch.Size``), ``set``/``frozenset``;
- numpy arrays and numpy scalars are stored as tensors tagged
  ``{"__cl_numpy__": tensor}`` (``{"__cl_numpy_scalar__": tensor}``) and turned
  back into numpy, with the same dtype and values, by :func:`decode_state`.

:func:`state_digest` is a SHA-256 over a canonical walk of a tree: type tags,
container sizes, keys in insertion order, scalars by ``repr``, tensors by
dtype, shape and raw bytes; set members are hashed order-free (their
iteration order depends on the string hash seed). A flipped bit anywhere in a
tensor, a number, a key or the structure changes it.
"""

from __future__ import annotations

import hashlib
import inspect
from collections import OrderedDict
from typing import Any

import numpy as np
import torch

from cl.errors import ProtocolError

NUMPY_TAG = "__cl_numpy__"
NUMPY_SCALAR_TAG = "__cl_numpy_scalar__"
_LEAVES = (type(None), bool, int, float, str, bytes, torch.dtype)

ALLOWED = ("tensors, numbers, strings, bytes, None, numpy arrays and (nested) dicts, lists, "
           "tuples and sets of them")


def encode_state(state: Any, where: str = "state") -> Any:
    """``state`` made loadable with ``weights_only=True``: numpy converted to tagged tensors.

    Parameters
    ----------
    state : object
        A ``state_dict()`` result.
    where : str
        Path of ``state`` for messages (``"NMCStrategy.state_dict()"``).

    Raises
    ------
    ProtocolError
        A value of another type; the message names its path and type and what to return.
    """
    if isinstance(state, torch.Tensor) or type(state) in _LEAVES:
        return state
    if isinstance(state, np.ndarray):
        return {NUMPY_TAG: _numpy_tensor(state, where)}
    if isinstance(state, np.generic):
        return {NUMPY_SCALAR_TAG: _numpy_tensor(np.asarray(state), where)}
    if type(state) in (dict, OrderedDict):
        out = type(state)()
        for key, value in state.items():
            if not isinstance(key, (str, int)) or isinstance(key, bool):
                raise ProtocolError(f"{where} has a key {key!r} of type {type(key).__name__}; "
                                    "state dict keys must be strings or integers.")
            if key in (NUMPY_TAG, NUMPY_SCALAR_TAG):
                raise ProtocolError(f"{where} uses the reserved key {key!r}; rename it.")
            out[key] = encode_state(value, f"{where}[{key!r}]")
        return out
    if type(state) in (list, tuple, torch.Size):
        items = [encode_state(v, f"{where}[{i}]") for i, v in enumerate(state)]
        return items if type(state) is list else type(state)(items)
    if type(state) in (set, frozenset):
        return type(state)(encode_state(v, f"{where}{{...}}") for v in state)
    what = "a function" if inspect.isroutine(state) else \
        f"a {type(state).__module__}.{type(state).__qualname__}"
    raise ProtocolError(
        f"{where} holds {what} ({_short(state)}); a state dict may hold only {ALLOWED}, so it "
        "can be checkpointed and read back safely. Return the data that rebuilds the object "
        "(for a module, its state_dict(); for a function, the option that selects it)."
    )


def decode_state(state: Any) -> Any:
    """Inverse of :func:`encode_state`: tagged tensors back to numpy arrays and scalars."""
    if type(state) in (dict, OrderedDict):
        if len(state) == 1 and NUMPY_TAG in state:
            return state[NUMPY_TAG].numpy().copy()
        if len(state) == 1 and NUMPY_SCALAR_TAG in state:
            return state[NUMPY_SCALAR_TAG].numpy()[()]
        out = type(state)()
        for key, value in state.items():
            out[key] = decode_state(value)
        return out
    if type(state) is list:
        return [decode_state(v) for v in state]
    if type(state) is tuple:
        return tuple(decode_state(v) for v in state)
    return state


def state_digest(tree: Any) -> str:
    """SHA-256 (hex) of the canonical walk of ``tree`` (see module docstring)."""
    h = hashlib.sha256()
    _feed(h, tree)
    return h.hexdigest()


def _feed(h: Any, node: Any) -> None:
    if isinstance(node, torch.Tensor):
        t = node.detach().to("cpu")
        t = t.to_dense() if t.layout != torch.strided else t
        t = t.contiguous()
        h.update(f"T{t.dtype}{tuple(t.shape)}|".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    elif isinstance(node, (str, bytes)):
        raw = node.encode("utf-8", "surrogatepass") if isinstance(node, str) else node
        h.update(f"{'S' if isinstance(node, str) else 'B'}{len(raw)}|".encode())
        h.update(raw)
    elif isinstance(node, (dict, OrderedDict)):
        h.update(f"D{len(node)}|".encode())
        for key, value in node.items():
            _feed(h, key)
            _feed(h, value)
    elif isinstance(node, (list, tuple)):
        h.update(f"L{len(node)}|".encode())
        for value in node:
            _feed(h, value)
    elif isinstance(node, (set, frozenset)):
        members = sorted(state_digest(v) for v in node)
        h.update(f"E{len(members)}|{''.join(members)}".encode())
    else:  # None, bool, int, float, torch.dtype
        h.update(f"V{type(node).__name__}:{node!r}|".encode())


def _numpy_tensor(array: np.ndarray, where: str) -> torch.Tensor:
    if array.dtype.byteorder not in ("=", "|"):
        array = array.astype(array.dtype.newbyteorder("="))
    try:
        return torch.from_numpy(array.copy(order="C"))
    except TypeError as err:
        raise ProtocolError(
            f"{where} is a numpy array of dtype {array.dtype}, which has no tensor equivalent; "
            "store numbers (e.g. array.astype(float)) or a list (array.tolist())."
        ) from err


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."
