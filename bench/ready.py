"""The one answer to "is this pod (or node) Ready?".

Pods and nodes both report readiness as a `Ready` condition with status "True". The
harness meets them as raw JSON from a watch or a plain GET (dicts), as kr8s objects
(attribute access onto dicts), and as the official client's models (V1Pod, V1Node);
this reads all three the same way, so no caller spells the condition check itself.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


def _get(obj: Any, key: str) -> Any:
    if obj is None:
        return None
    if isinstance(obj, Mapping):
        return obj.get(key)
    return getattr(obj, key, None)


def condition(obj: Any, kind: str) -> Any:
    """The object's status condition of type `kind` (a dict or a model), or None."""
    for c in _get(_get(obj, "status"), "conditions") or []:
        if _get(c, "type") == kind:
            return c
    return None


def condition_true(obj: Any, kind: str) -> bool:
    return _get(condition(obj, kind), "status") == "True"


def is_ready(obj: Any) -> bool:
    """A pod or node whose Ready condition is "True" (no status yet: not Ready)."""
    return condition_true(obj, "Ready")
