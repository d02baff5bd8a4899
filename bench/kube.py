"""The harness's one Kubernetes API client: a kubeconfig opened once per run, kr8s underneath.

kr8s (async, on httpx) resolves the kubeconfig: client certificates, bearer tokens and
exec plugins, and on a 401 or 403 it runs the plugin again and retries. The harness is
threaded, not async, so `Kube` runs kr8s on an event loop of its own (one thread,
anyio's blocking portal) and offers plain blocking calls to any thread.

Raw paths in, JSON dicts out: the harness needs a handful of calls with explicit
timeouts and one-line errors, not model objects. The watch is the latency-critical call:
`watch_lines` stamps the harness clock in the loop the moment a chunk of the response
arrives, before any decoding, and hands each complete line with the stamp of the chunk
that completed it. (kr8s's own `watch` decodes every event into an object first, so it
serves no stamped watch; its `call_api(stream=True)` does.)

Errors: a kubeconfig that does not load is a UserError; a refused request (401/403) is a
UserError; no connection, a timeout or any other HTTP error is a ClusterError
(`ApiStatusError` when the server answered, with its status; `ApiUnreachable` when not).

Watches run on a client of their own (`for_watches`): its own event loop, so the run's
other requests never delay a stamp; the local provider's also start their connections
inside the control-plane network namespace, so the loopback forwarder stays out of the
T1/T2 stamps. kr8s has
no transport option: `_Api` overrides its session factory to pass one.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import os
import queue
import ssl
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any

import anyio
import anyio.abc
import anyio.from_thread
import anyio.to_thread
import httpx
import yaml
from kr8s._api import Api as _Kr8sApi
from kr8s._exceptions import APITimeoutError, ServerError

from bench import __version__
from bench.errors import ClusterError, UserError

Clock = Callable[[], int]
TransportFactory = Callable[["ssl.SSLContext | bool"], httpx.AsyncBaseTransport]
DEFAULT_TIMEOUT_S = 15.0
CONNECT_TIMEOUT_S = 10.0
MERGE_PATCH = "application/merge-patch+json"
STRATEGIC_PATCH = "application/strategic-merge-patch+json"
# Connections kept open between requests. httpx keeps 20 by default: with more requests
# in flight (the background fill runs 64) every further one was closed after its request
# and the next opened anew, a TLS handshake each: 9.6 % of the API server's CPU during a
# 5,000-Service fill.
KEEPALIVE = 64


class ApiStatusError(ClusterError):
    """The API server answered with an error status."""

    def __init__(self, message: str, status: int) -> None:
        super().__init__(message)
        self.status = status


class ApiUnreachable(ClusterError):
    """No answer: no connection, a reset, or a timeout."""

    def __init__(self, message: str, reason: str, timed_out: bool) -> None:
        super().__init__(message)
        self.reason = reason
        self.timed_out = timed_out


def _unreachable(what: str, exc: BaseException) -> ApiUnreachable:
    timed_out = isinstance(exc, (APITimeoutError, httpx.TimeoutException, TimeoutError))
    reason = "timed out" if timed_out and not str(exc).strip() else first_line(exc)
    cause: BaseException | None = exc
    while cause is not None:  # anyio says "All connection attempts failed"; say why
        if isinstance(cause, OSError) and not isinstance(cause, ssl.SSLError) and cause.errno:
            reason = f"{reason} ({os.strerror(cause.errno)})"
            break
        cause = cause.__cause__ or cause.__context__
    return ApiUnreachable(f"{what}: {reason}", reason, timed_out)


def first_line(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    return text.splitlines()[0]


def kubeconfig_path(raw: str | Path) -> Path:
    """The kubeconfig's path, checked: it exists, is YAML, and names a cluster."""
    path = Path(os.path.expanduser(str(raw)))
    if not path.exists():
        raise UserError(f"kubeconfig {path} does not exist")
    if not path.is_file():
        raise UserError(f"kubeconfig {path} is not a file")
    try:
        doc = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as exc:
        raise UserError(f"kubeconfig {path} is not readable YAML: {first_line(exc)}") from exc
    if not isinstance(doc, dict) or not doc.get("clusters"):
        raise UserError(f"kubeconfig {path} names no cluster")
    return path


class _Api(_Kr8sApi):
    """kr8s's Api taking paths as given (`/api/v1/...`) and, optionally, a transport."""

    transport_factory: TransportFactory | None = None
    server: str | None = None  # another address of the kubeconfig's API server

    def _construct_url(self, version: str = "v1", base: str = "",
                       namespace: str | None = None, url: str = "") -> str:
        return url

    async def _create_session(self) -> None:
        # as kr8s's own, plus the transport: kr8s takes none (netns connections, tests)
        headers = {"User-Agent": f"hopbench/{__version__} kr8s",
                   "content-type": "application/json"}
        if self.auth.token:
            headers["Authorization"] = f"Bearer {self.auth.token}"
        if self._session is not None:
            try:
                await self._session.aclose()
            except RuntimeError:
                pass
            self._session = None
        verify = await self.auth.ssl_context()  # type: ignore[no-untyped-call]  # kr8s
        factory = self.transport_factory
        self._session = httpx.AsyncClient(
            base_url=self.server or self.auth.server, headers=headers, verify=verify,
            timeout=self._timeout, follow_redirects=True,
            limits=httpx.Limits(max_connections=2 * KEEPALIVE,
                                max_keepalive_connections=KEEPALIVE),
            transport=factory(verify) if factory else None,
            proxy=None if factory else self.auth.proxy)


class Kube:
    """Blocking calls on one kubeconfig's API server, from any thread."""

    def __init__(self, kubeconfig: str | Path, *, timeout: float = DEFAULT_TIMEOUT_S,
                 server: str | None = None, transport: TransportFactory | None = None,
                 _parent: Kube | None = None) -> None:
        self.kubeconfig = Path(kubeconfig) if _parent else kubeconfig_path(kubeconfig)
        self.timeout = timeout
        self._parent = _parent
        self._portal_cm: AbstractContextManager[anyio.from_thread.BlockingPortal] | None
        self._portal_cm = anyio.from_thread.start_blocking_portal()  # a loop of its own
        self._portal = self._portal_cm.__enter__()
        try:
            self._api = self._portal.call(self._open, server, transport)
        except BaseException:
            self._stop_portal()
            raise
        self.server = str(server or self._api.auth.server).rstrip("/")
        self._closed = False

    async def _open(self, server: str | None, transport: TransportFactory | None) -> _Api:
        api = _Api(bypass_factory=True, kubeconfig=str(self.kubeconfig))
        api.transport_factory, api.server = transport, server
        if self._parent is not None:  # the same credentials, loaded once
            api.auth = self._parent._api.auth
        else:
            try:
                await api.auth.reauthenticate()
            except Exception as exc:  # noqa: BLE001 - kr8s raises many types for bad files
                raise UserError(f"kubeconfig {self.kubeconfig} is not usable: "
                                f"{first_line(exc)}") from None
        # the session now, not at the first request: kr8s makes it lazily, after an await,
        # so concurrent first requests each made one and closed the one before (a fill's
        # first 64 requests left 44 connections to be opened again)
        try:
            await api._create_session()
        except (OSError, ValueError) as exc:  # the kubeconfig's certificates
            raise UserError(f"kubeconfig {self.kubeconfig} is not usable: "
                            f"{first_line(exc)}") from None
        return api

    def for_watches(self, netns: str = "", server: str = "") -> Kube:
        """A client for the stamped watches: the same credentials, an event loop of its own
        (a watch's stamp is taken in its loop, which the run's other requests must not
        delay), and with `netns` its connections start inside that namespace and go to
        `server` directly. Close it before this one."""
        return Kube(self.kubeconfig, timeout=self.timeout, server=server or self.server,
                    transport=netns_transport(netns) if netns else None, _parent=self)

    # --- one request -----------------------------------------------------------------
    def request(self, method: str, path: str, *, params: dict[str, Any] | None = None,
                json: Any = None, headers: dict[str, str] | None = None,
                timeout: float | None = None) -> httpx.Response:
        """The answer, whatever its status; ClusterError when none came."""
        kw: dict[str, Any] = {"params": params or None,
                              "timeout": httpx.Timeout(timeout or self.timeout)}
        if json is not None:
            kw["json"] = json
        if headers:
            kw["headers"] = headers
        try:
            resp: httpx.Response = self._portal.call(self._request, method, path, kw)
        except (httpx.HTTPError, APITimeoutError, OSError) as exc:
            raise _unreachable(f"API server {self.server}: {method} {path}", exc) from None
        return resp

    async def _request(self, method: str, path: str, kw: dict[str, Any]) -> httpx.Response:
        try:
            async with self._api.call_api(method, url=path, **kw) as resp:
                return resp
        except ServerError as exc:  # kr8s raises for >= 400, after re-auth on 401/403
            if exc.response is None:
                raise
            return exc.response

    def get(self, path: str, timeout: float | None = None, **params: Any
            ) -> dict[str, Any] | None:
        """The object, or None for 404."""
        resp = self.request("GET", path, params=params, timeout=timeout)
        if resp.status_code == 404:
            return None
        if resp.status_code != 200:
            _raise(resp, f"GET {path}")
        return dict(resp.json())

    def list(self, path: str, **params: Any) -> list[dict[str, Any]]:
        return list((self.get(path, **params) or {}).get("items") or [])

    def get_text(self, path: str, **params: Any) -> str:
        """The body of a 200 answer, else ""."""
        resp = self.request("GET", path, params=params)
        return resp.text if resp.status_code == 200 else ""

    def create(self, path: str, obj: dict[str, Any]) -> dict[str, Any]:
        resp = self.request("POST", path, json=obj)
        if resp.status_code not in (200, 201, 202):
            _raise(resp, f"create {obj.get('kind')} {obj.get('metadata', {}).get('name')}")
        return dict(resp.json())

    def patch(self, path: str, patch: dict[str, Any], content_type: str = MERGE_PATCH
              ) -> dict[str, Any]:
        resp = self.request("PATCH", path, json=patch, headers={"content-type": content_type})
        if resp.status_code != 200:
            _raise(resp, f"PATCH {path}")
        return dict(resp.json())

    def delete(self, path: str, **body: Any) -> bool:
        """True if it existed. `body` is DeleteOptions (e.g. propagationPolicy)."""
        resp = self.request("DELETE", path, json=body or None)
        if resp.status_code == 404:
            return False
        if resp.status_code not in (200, 202):
            _raise(resp, f"DELETE {path}")
        return True

    # --- the raw watch ----------------------------------------------------------------
    @contextlib.contextmanager
    def watch(self, path: str, params: dict[str, str], clock: Clock = time.time_ns
              ) -> Iterator[Iterator[tuple[int, bytes]]]:
        """A streaming GET as (receive stamp, raw line) pairs. Each stamp is taken in the
        event loop as the chunk that completes its line arrives, before any decoding.
        Iterating raises ApiStatusError for an error answer, ApiUnreachable for a lost
        connection; leaving the block closes the stream."""
        lines: queue.SimpleQueue[tuple[int, bytes] | BaseException | None] = queue.SimpleQueue()
        future = self._portal.start_task_soon(self._pump, path, params, clock, lines)

        def pairs() -> Iterator[tuple[int, bytes]]:
            while (item := lines.get()) is not None:
                if isinstance(item, BaseException):
                    raise item
                yield item

        try:
            yield pairs()
        finally:
            future.cancel()
            with contextlib.suppress(concurrent.futures.CancelledError,
                                     concurrent.futures.TimeoutError, Exception):
                future.result(timeout=5)  # its errors went through the queue already

    async def _pump(self, path: str, params: dict[str, str], clock: Clock,
                    out: queue.SimpleQueue[tuple[int, bytes] | BaseException | None]) -> None:
        try:
            async with self._api.call_api(
                    "GET", url=path, params=params, stream=True,
                    timeout=httpx.Timeout(CONNECT_TIMEOUT_S, read=None)) as resp:
                buf = b""
                async for chunk in resp.aiter_bytes():
                    t_ns = clock()  # before any decoding
                    buf += chunk
                    *done, buf = buf.split(b"\n")
                    for line in done:
                        if line.strip():
                            out.put((t_ns, line))
            out.put(None)
        except ServerError as exc:
            code = exc.response.status_code if exc.response is not None else 0
            out.put(ApiStatusError(f"watch {path}: HTTP {code}: {first_line(exc)}", code))
        except (httpx.HTTPError, APITimeoutError, OSError) as exc:
            out.put(_unreachable(f"watch {path}", exc))
        except BaseException as exc:
            out.put(ClusterError(f"watch {path}: {type(exc).__name__}"))
            raise

    # --- closing -----------------------------------------------------------------------
    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        session = self._api._session
        if session is not None:
            try:
                self._portal.call(session.aclose)
            except (RuntimeError, httpx.HTTPError):
                pass
        self._stop_portal()

    def _stop_portal(self) -> None:
        if self._portal_cm is not None:
            cm, self._portal_cm = self._portal_cm, None
            cm.__exit__(None, None, None)

    def __enter__(self) -> Kube:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _raise(resp: httpx.Response, what: str) -> None:
    try:
        msg = resp.json().get("message", "")
    except ValueError:
        msg = resp.text[:200]
    if resp.status_code in (401, 403):
        raise UserError(f"{what}: the API server refused ({resp.status_code}): {msg}")
    raise ApiStatusError(f"{what}: HTTP {resp.status_code}: {msg}", resp.status_code)


# --- connections from inside a network namespace (local provider) -----------------------
def netns_transport(netns: str) -> TransportFactory:
    def make(verify: ssl.SSLContext | bool) -> httpx.AsyncBaseTransport:
        from bench.cluster.local.nshttp import async_transport  # the one netns transport

        ctx = verify if isinstance(verify, ssl.SSLContext) else ssl.create_default_context()
        return async_transport(netns, ssl_context=ctx)
    return make
