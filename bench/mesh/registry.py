"""The meshes hopbench can add, by name: `--mesh NAME` is checked here, before anything runs.

A mesh is a new module plus one `register` line, never a branch on its name elsewhere.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from bench.errors import UserError

if TYPE_CHECKING:
    from bench.cluster.local.spec import ClusterSpec
    from bench.kube import Kube

Start = Callable[[str, list[str], str, dict[str, str]], int]  # key, argv, netns, env -> pid


@dataclass(frozen=True)
class MeshKind:
    """What the rest of hopbench needs to know of one mesh."""

    name: str
    summary: str       # one line for `--help` and errors
    client: str        # the node-side client the agents run (bench.agent.meshclient)
    xds_port: int      # where its discovery server listens
    monitoring_port: int  # its /metrics (the convergence histogram)
    local: str         # module whose start(spec, api, start_fn, log_hint) brings it up locally


_BY_NAME: dict[str, MeshKind] = {}


def register(kind: MeshKind) -> None:
    if kind.name in _BY_NAME:
        raise ValueError(f"mesh {kind.name!r} is registered twice")
    _BY_NAME[kind.name] = kind


def names() -> tuple[str, ...]:
    return tuple(sorted(_BY_NAME))


def check(name: str | None) -> str:
    """The mesh's name ("" for none), or one line refusing an unknown one."""
    if not name:
        return ""
    if name not in _BY_NAME:
        raise UserError(f"--mesh {name!r}: unknown mesh (known: {', '.join(names())})")
    return name


def get(name: str) -> MeshKind:
    return _BY_NAME[check(name)]


def local_module(name: str) -> LocalMesh:
    """The module that runs mesh `name` on the local cluster."""
    module: LocalMesh = importlib.import_module(get(name).local)
    return module


class LocalMesh(Protocol):
    """What a mesh's local module offers (bench.mesh.istio.local)."""

    def start(self, spec: ClusterSpec, api: Kube, start_fn: Start,
              log_hint: Path | None = None) -> int: ...

    def xds_address(self, spec: ClusterSpec) -> str: ...

    def log_path(self, spec: ClusterSpec) -> Path: ...


register(MeshKind("istio", "istiod (pilot-discovery) with proxyless gRPC clients on every node",
                  client="meshclient", xds_port=15010, monitoring_port=15014,
                  local="bench.mesh.istio.local"))
