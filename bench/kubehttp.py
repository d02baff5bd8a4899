"""A plain httpx client for any kubeconfig, for the latency-critical raw watches.

The official client decodes every watch event into model objects before we can stamp
it; stamping the raw line as it arrives keeps the harness's own delay out of T1/T2.
Authentication (certs, tokens, exec plugins) is resolved by the official loader.
"""

from __future__ import annotations

import ssl
from pathlib import Path

import httpx
from kubernetes import client, config

from bench.errors import UserError


def http_client(kubeconfig: str | Path, timeout: float | None = 10.0) -> httpx.Client:
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
    headers = {}
    token = (cfg.api_key or {}).get("authorization") or (cfg.api_key or {}).get("BearerToken")
    if token:
        headers["Authorization"] = token if token.startswith("Bearer ") else f"Bearer {token}"
    return httpx.Client(base_url=cfg.host, verify=ctx, headers=headers,
                        timeout=httpx.Timeout(timeout, read=None) if timeout else None)
