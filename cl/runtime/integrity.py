"""Content checksums of JSON documents that carry their own digest.

A JSON object cannot hold the hash of its own bytes, so the digest covers the
object's *canonical encoding without the digest field*: ``json.dumps(obj
minus the field, sort_keys=True, separators=(",", ":"), ensure_ascii=False,
allow_nan=False)`` encoded as UTF-8, hashed with SHA-256. Re-indenting the
file or reordering its keys keeps the digest valid; changing any value, key or
the digest itself does not. Python writes floats with ``repr``, which reads
back to the same float, so a document verifies after any number of
write/read round trips.

Used by ``results.json`` (field ``sha256``); imports no torch.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any, Literal

DIGEST_FIELD = "sha256"
Verdict = Literal["ok", "missing", "mismatch"]


def json_digest(obj: dict[str, Any], field: str = DIGEST_FIELD) -> str:
    """SHA-256 (hex) of the canonical JSON encoding of ``obj`` without ``field``."""
    body = {k: v for k, v in obj.items() if k != field}
    text = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False,
                      allow_nan=False)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def seal(obj: dict[str, Any], field: str = DIGEST_FIELD) -> dict[str, Any]:
    """A copy of ``obj`` with ``field`` set to its digest (placed last)."""
    body = {k: v for k, v in obj.items() if k != field}
    return {**body, field: json_digest(body, field)}


def verify(obj: dict[str, Any], field: str = DIGEST_FIELD) -> Verdict:
    """``"ok"`` when ``obj[field]`` is the digest of the rest, ``"missing"`` without the
    field, ``"mismatch"`` otherwise (the contents were changed after sealing)."""
    if field not in obj:
        return "missing"
    stored = obj[field]
    try:
        return "ok" if isinstance(stored, str) and stored == json_digest(obj, field) else "mismatch"
    except (TypeError, ValueError):  # a value JSON cannot encode canonically (NaN...)
        return "mismatch"


__all__ = ["DIGEST_FIELD", "Verdict", "json_digest", "seal", "verify"]
