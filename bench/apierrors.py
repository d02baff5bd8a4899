"""One place that recognises "the cluster stopped answering", whichever client noticed.

The harness talks to the API server through bench.kube (kr8s, httpx underneath) and to
the node agents through sockets and httpx. When the API server goes away mid-run each
fails in its own words (before this module, a 134-line traceback). `lost_cluster` turns
all of them into one ClusterError line; anything else is left alone, so a bug still shows
its traceback.
"""

from __future__ import annotations

import httpx

from bench.errors import ClusterError
from bench.kube import ApiStatusError, ApiUnreachable

MAX_REASON = 160  # characters of the client's own words kept in the line


def is_connection_failure(exc: BaseException) -> bool:
    """True for a failure to reach or hear from a server, never for a refusal it sent."""
    if isinstance(exc, ApiStatusError):
        return exc.status >= 500
    return isinstance(exc, (ApiUnreachable, httpx.TransportError, ConnectionError,
                            TimeoutError))


def reason(exc: BaseException) -> str:
    """The cause in one short line: 'ApiUnreachable: All connection attempts failed
    (Connection refused)', not a pool description and a URL."""
    text = exc.reason if isinstance(exc, ApiUnreachable) else str(exc)
    text = " ".join(text.split()) or type(exc).__name__
    if len(text) > MAX_REASON:
        text = text[:MAX_REASON - 3] + "..."
    return f"{type(exc).__name__}: {text}"


def lost_cluster(exc: BaseException, after: str) -> ClusterError | None:
    """A ClusterError saying the API server stopped answering (plus `after`, what the user
    can do now), or None when `exc` is not a connection failure."""
    if not is_connection_failure(exc):
        return None
    api = isinstance(exc, (ApiStatusError, ApiUnreachable, httpx.TransportError))
    who = "the API server" if api else "the cluster (a node agent)"
    return ClusterError(f"{who} stopped answering ({reason(exc)}); {after}")
