"""A plain httpx client for any kubeconfig, for the latency-critical raw watches.

The official client decodes every watch event into model objects before we can stamp
it; stamping the raw line as it arrives keeps the harness's own delay out of T1/T2.
Authentication (certs, tokens, exec plugins) is resolved by the official loader.
"""

from __future__ import annotations

import ssl
from collections.abc import Generator
from pathlib import Path

import httpcore
import httpx
from kubernetes import client, config

from bench.cluster.local.nshttp import NetnsBackend
from bench.errors import UserError


def http_client(kubeconfig: str | Path, timeout: float | None = 10.0,
                netns: str | None = None, server: str | None = None) -> httpx.Client:
    """A client authenticated as the kubeconfig says; with `netns`, connections start inside
    that namespace and go to `server` directly (no loopback forwarder in the path)."""
    cfg = client.Configuration()
    try:
        config.load_kube_config(config_file=str(kubeconfig), client_configuration=cfg)
    except Exception as exc:  # noqa: BLE001 - the loader raises many types for bad files
        raise UserError(f"kubeconfig {kubeconfig} is not usable: {exc}") from exc
    if cfg.verify_ssl:
        ctx = ssl.create_default_context(cafile=cfg.ssl_ca_cert or None)
    else:
        ctx = ssl.create_default_context()
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    if cfg.cert_file:
        ctx.load_cert_chain(cfg.cert_file, cfg.key_file)
    transport = httpx.HTTPTransport(verify=ctx)
    if netns:
        transport._pool = httpcore.ConnectionPool(  # noqa: SLF001 - httpx has no public hook
            ssl_context=ctx, network_backend=NetnsBackend(netns))
    return httpx.Client(base_url=server or cfg.host, auth=BearerFromConfig(cfg),
                        transport=transport,
                        timeout=httpx.Timeout(timeout, read=None) if timeout else None)


class BearerFromConfig(httpx.Auth):
    """The kubeconfig's bearer token, read again for every request: an exec plugin's token
    (EKS, GKE, OIDC helpers) expires during a long run, and the loader's refresh hook
    renews it once expired (a timestamp comparison otherwise). Restarted watches and
    retried requests thus carry a valid token."""

    def __init__(self, cfg: client.Configuration) -> None:
        self.cfg = cfg

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        hook = getattr(self.cfg, "refresh_api_key_hook", None)
        if hook is not None:
            hook(self.cfg)
        keys = self.cfg.api_key or {}
        token = keys.get("authorization") or keys.get("BearerToken")
        if token:
            request.headers["Authorization"] = (
                token if token.startswith("Bearer ") else f"Bearer {token}")
        yield request
