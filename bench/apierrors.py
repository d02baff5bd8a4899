"""One place that recognises "the cluster stopped answering", whichever client noticed.

The harness talks to the API server through the `kubernetes` client (urllib3 underneath)
and through httpx, and to the node agents through sockets. When the API server goes away
mid-run each of them fails in its own words (a urllib3 `MaxRetryError` was a 134-line
traceback). `lost_cluster` turns all of them into one ClusterError line; anything else is
left alone, so a bug still shows its traceback.
"""

from __future__ import annotations

import httpx
import urllib3.exceptions
from kubernetes.client.exceptions import ApiException

from bench.errors import ClusterError

MAX_REASON = 160  # characters of the client's own words kept in the line


def is_connection_failure(exc: BaseException) -> bool:
    """True for a failure to reach or hear from a server, never for a refusal it sent."""
    if isinstance(exc, ApiException):
        # status 0: the kubernetes client's wrapping of a TLS or protocol failure
        return exc.status is not None and (exc.status == 0 or exc.status >= 500)
    return isinstance(exc, (urllib3.exceptions.HTTPError, httpx.TransportError,
                            ConnectionError, TimeoutError))


def reason(exc: BaseException) -> str:
    """The innermost cause in one short line: '[Errno 111] Connection refused', not a pool
    description and a URL."""
    inner: BaseException = exc
    while isinstance(inner, urllib3.exceptions.MaxRetryError) and inner.reason is not None:
        inner = inner.reason
    if isinstance(inner, ApiException):
        text = f"HTTP {inner.status} {inner.reason or ''}".strip()
    else:
        text = str(inner)
        if isinstance(inner, urllib3.exceptions.NewConnectionError):
            text = text.rsplit(": ", 1)[-1]  # drop the connection object's repr
    text = " ".join(text.split()) or type(inner).__name__
    if len(text) > MAX_REASON:
        text = text[:MAX_REASON - 3] + "..."
    return f"{type(inner).__name__}: {text}"


def lost_cluster(exc: BaseException, after: str) -> ClusterError | None:
    """A ClusterError saying the API server stopped answering (plus `after`, what the user
    can do now), or None when `exc` is not a connection failure."""
    if not is_connection_failure(exc):
        return None
    api = isinstance(exc, (ApiException, urllib3.exceptions.HTTPError, httpx.TransportError))
    who = "the API server" if api else "the cluster (a node agent)"
    return ClusterError(f"{who} stopped answering ({reason(exc)}); {after}")
