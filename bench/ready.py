"""The one answer to "is this pod (or node) Ready?".

Pods and nodes both report readiness as a `Ready` condition with status "True". The
harness meets them as JSON objects (bench.kube's GETs and the raw watch), so no caller
spells the condition check itself.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


def condition(obj: Mapping[str, Any] | None, kind: str) -> Mapping[str, Any] | None:
    """The object's status condition of type `kind`, or None."""
    for c in ((obj or {}).get("status") or {}).get("conditions") or []:
        if c.get("type") == kind:
            return dict(c)
    return None


def condition_true(obj: Mapping[str, Any] | None, kind: str) -> bool:
    return (condition(obj, kind) or {}).get("status") == "True"


def is_ready(obj: Mapping[str, Any] | None) -> bool:
    """A pod or node whose Ready condition is "True" (no status yet: not Ready)."""
    return condition_true(obj, "Ready")
