"""The provider protocol the runner depends on."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Protocol

from bench.kube import Kube
from bench.sources.agents import Transport


class Provider(Protocol):
    name: str
    kubeconfig: Path

    def nodes(self) -> list[str]: ...

    def proxy_mode(self) -> str: ...

    def set_proxy_mode(self, mode: str) -> None: ...

    def start_agents(self, token: str, probe_interval_ms: float) -> list[Transport]: ...

    def stop_agents(self) -> None: ...

    def kube(self) -> Kube:
        """The run's API client (the kubeconfig, loaded once); the provider closes it."""
        ...

    def watch_client(self) -> Kube:
        """The client for the stamped raw watches (may be kube() itself)."""
        ...

    def audit_log(self) -> Path | None: ...

    def provenance(self) -> dict[str, Any]: ...

    def close(self) -> None: ...
