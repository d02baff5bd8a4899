"""Ask a Service who answers, from inside a node's network namespace.

Every request opens a NEW TCP connection (a kept-alive connection would stick to the
first backend and never see new rules). agnhost netexec's /hostname names the pod.
"""

from __future__ import annotations

import time

import httpx

from bench.cluster.local import nshttp


def who_answers(netns_name: str, ip: str, port: int, requests: int = 60,
                timeout_s: float = 20.0, stop_after: int | None = None) -> dict[str, int]:
    """Pod name -> answers, over at most `requests` new connections and `timeout_s`.

    Stops early once `stop_after` distinct pods have answered. Failures count under "".
    """
    seen: dict[str, int] = {}
    deadline = time.monotonic() + timeout_s
    with nshttp.client(netns_name, timeout=1.0, keepalive=False) as http:
        for _ in range(requests):
            if time.monotonic() > deadline:
                break
            try:
                resp = http.get(f"http://{ip}:{port}/hostname")
                key = resp.text.strip() if resp.status_code == 200 else ""
            except httpx.TransportError:
                key = ""
            seen[key] = seen.get(key, 0) + 1
            if stop_after and len([k for k in seen if k]) >= stop_after:
                break
    return seen
