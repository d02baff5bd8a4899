"""The cluster kinds hopbench can create and remove, registered by name (`local`, `kind`).

The CLI's `cluster up/down/set-proxy-mode/load-image --provider NAME` looks the kind up
here instead of branching on its name; a new kind of cluster is one more class and one
`register` line. Measuring a cluster is the providers' job (bench.providers)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Protocol

from bench.errors import UserError

Say = Callable[[str], None]
#: (stage, done, total) of a Go build the bring-up may need first
BuildProgress = Callable[[str, int, int], None]


class Lifecycle(Protocol):
    name: str

    def up(self, name: str, nodes: int, mode: str, component_args: list[str], say: Say,
           build_progress: BuildProgress | None = None, mesh: str = "",
           component_env: Sequence[str] = ()) -> Path:
        """Create the cluster (with `mesh`'s control plane); returns its admin kubeconfig."""
        ...

    def down(self, name: str, say: Say) -> str:
        """Remove it (idempotent); returns what was done, in words."""
        ...

    def set_proxy_mode(self, name: str, mode: str, say: Say) -> None: ...


class LocalLifecycle:
    name = "local"

    def up(self, name: str, nodes: int, mode: str, component_args: list[str], say: Say,
           build_progress: BuildProgress | None = None, mesh: str = "",
           component_env: Sequence[str] = ()) -> Path:
        from bench.build.gobuild import require_toolset
        from bench.cluster.local import cluster
        from bench.cluster.local.spec import (
            ClusterSpec,
            parse_component_args,
            parse_component_env,
        )

        spec = ClusterSpec(name=name, nodes=nodes, proxy_mode=mode,
                           component_args=parse_component_args(component_args),
                           mesh=mesh, component_env=parse_component_env(list(component_env)))
        cluster.validate_new(spec)
        if mesh:  # built before anything exists, with the same progress bar
            from bench.build.meshbuild import build_mesh
            build_mesh(build_progress)
        return cluster.up(spec, say=say, tools=require_toolset(build_progress)).kubeconfig

    def down(self, name: str, say: Say) -> str:
        from bench.cluster.local import live

        return f"cluster {name!r} removed: {live.down(name, say=say)}"

    def set_proxy_mode(self, name: str, mode: str, say: Say) -> None:
        from bench.cluster.local import live

        live.set_proxy_mode(name, mode, say=say)


class KindLifecycle:
    name = "kind"

    def up(self, name: str, nodes: int, mode: str, component_args: list[str], say: Say,
           build_progress: BuildProgress | None = None, mesh: str = "",
           component_env: Sequence[str] = ()) -> Path:
        from bench.cluster import kind
        from bench.cluster.local.spec import check_mode

        if mesh:
            raise UserError("--mesh is for the local provider; on a kind cluster, install "
                            "istiod yourself and run with --kubeconfig --mesh istio")
        if component_args or component_env:
            raise UserError("--component-arg and --component-env are for the local provider; "
                            "kind takes its settings from kind-configs/")
        return kind.up(check_mode(mode), nodes=nodes, name=name, say=say)

    def down(self, name: str, say: Say) -> str:
        from bench.cluster import kind

        return f"kind cluster {name!r} " + ("deleted" if kind.down(name, say=say)
                                            else "did not exist")

    def set_proxy_mode(self, name: str, mode: str, say: Say) -> None:
        from bench.cluster import kind
        from bench.cluster.local.spec import check_mode

        kind.set_proxy_mode(name, check_mode(mode), say=say)


_REGISTRY: dict[str, Lifecycle] = {}


def register(lifecycle: Lifecycle) -> None:
    _REGISTRY[lifecycle.name] = lifecycle


def get(name: str) -> Lifecycle:
    try:
        return _REGISTRY[name]
    except KeyError:
        raise UserError(f"unknown provider {name!r} (choose from "
                        f"{', '.join(sorted(_REGISTRY))})") from None


def names() -> list[str]:
    return sorted(_REGISTRY)


register(LocalLifecycle())
register(KindLifecycle())
