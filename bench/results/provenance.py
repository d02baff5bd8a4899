"""run.json's provenance: one typed record, written by the runner and read by every reader.

What a run was (who ran what, where, with which options and sweep points) used to be a
dict the runner wrote and each reader picked keys from. `Provenance` is that record:
`to_meta` gives the keys the runner writes into run.json (the same flat layout as before,
so an older run.json reads too), `from_meta` reads them back from any run.json, filling
what an older one lacks. What the provider adds (`Provider.provenance()`: cluster,
versions, nodes, kernel, ...) is kept whole under `facts`, flat in run.json. The run's
state and results (status, per-mode blocks, SLI, resumes) are not provenance: `RUN_STATE`
names them, and `from_meta` leaves them out.

The sweep points are provenance too: run.json's `points` is keyed by their labels, each
with its services, endpoints and churn rate (the runner adds each point's fill and mode
blocks under the same key as it measures them). A run written before sweeps has no
`points`: `points` is then empty, and its rows carry the point "" (bench.results.point).
Pure data: no I/O, so `analysis` may import it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from bench.results.point import Point

#: run.json keys that are the run's state or results, not its provenance
RUN_STATE = frozenset({
    "schema_version", "status", "modes", "sli", "finished_at", "finished_ok",
    "interrupted_at", "interrupt_reason", "resumes",
})


@dataclass(frozen=True)
class Provenance:
    """What a run was. Defaults are what an older run.json that lacks a key means."""

    run_id: str = ""
    created_at: str = ""
    harness_version: str = ""
    git_commit: str = ""
    host_kernel: str = ""
    proxy_modes: tuple[str, ...] = ()
    scenarios: tuple[str, ...] = ()
    scenario_config: dict[str, Any] = field(default_factory=dict)
    points: tuple[Point, ...] = ()  # in run order (ascending background Services)
    facts: dict[str, Any] = field(default_factory=dict)  # Provider.provenance()

    # the provider's facts every reader asks for (analysis pools runs by them)
    @property
    def provider(self) -> str:
        return str(self.facts.get("provider") or "")

    @property
    def kubernetes_version(self) -> str:
        return str(self.facts.get("kubernetes_version") or "")

    @property
    def node_count(self) -> int | None:
        value = self.facts.get("node_count")
        return int(value) if isinstance(value, (int, float)) else None

    def to_meta(self) -> dict[str, Any]:
        """The run.json keys of this record (provider facts flat beside the others)."""
        own = {
            "run_id": self.run_id, "created_at": self.created_at,
            "harness_version": self.harness_version, "git_commit": self.git_commit,
            "host_kernel": self.host_kernel, "proxy_modes": list(self.proxy_modes),
            "scenarios": list(self.scenarios), "scenario_config": dict(self.scenario_config),
            "points": {p.label: point_meta(p) for p in self.points},
        }
        clash = (set(own) | RUN_STATE) & set(self.facts)
        if clash:
            raise ValueError(f"provider provenance may not set {', '.join(sorted(clash))}")
        return {**self.facts, **own}

    @classmethod
    def from_meta(cls, meta: Mapping[str, Any]) -> Provenance:
        """The record a run.json holds, of any hopbench version (missing keys: defaults)."""
        own = _OWN
        sc = meta.get("scenario_config")
        return cls(
            run_id=str(meta.get("run_id") or ""), created_at=str(meta.get("created_at") or ""),
            harness_version=str(meta.get("harness_version") or ""),
            git_commit=str(meta.get("git_commit") or ""),
            host_kernel=str(meta.get("host_kernel") or ""),
            proxy_modes=_names(meta.get("proxy_modes")),
            scenarios=_names(meta.get("scenarios")),
            scenario_config=dict(sc) if isinstance(sc, Mapping) else {},
            points=_points(meta.get("points")),
            facts={k: v for k, v in meta.items() if k not in own and k not in RUN_STATE},
        )


def provider_facts(facts: Mapping[str, Any]) -> dict[str, Any]:
    """A provider's provenance() as `facts`: without the keys the record holds itself
    (providers also say `harness_version`; the record's is the one kept)."""
    return {k: v for k, v in facts.items() if k not in _OWN}


def point_meta(p: Point) -> dict[str, Any]:
    """run.json `points[label]`'s provenance part."""
    return {"services": p.services, "endpoints": p.endpoints, "churn_per_s": p.churn_per_s}


def _points(value: Any) -> tuple[Point, ...]:
    if not isinstance(value, Mapping):
        return ()
    out = []
    for label, entry in value.items():
        e = entry if isinstance(entry, Mapping) else {}
        try:
            base = Point.parse(str(label))
        except ValueError:
            base = Point()
        out.append(Point(int(e.get("services", base.services)),
                         int(e.get("endpoints", base.endpoints)),
                         float(e.get("churn_per_s", base.churn_per_s))))
    return tuple(out)


def _names(value: Any) -> tuple[str, ...]:
    """Names out of a list of strings, a list of {"name": ...} or a dict keyed by name (as
    run.json files of every version wrote them)."""
    if value is None:
        return ()
    if isinstance(value, str):
        return (value,)
    if isinstance(value, Mapping):
        return tuple(str(k) for k in value)
    return tuple(str(v.get("name", v)) if isinstance(v, Mapping) else str(v) for v in value)


_OWN = frozenset(f for f in Provenance.__dataclass_fields__ if f != "facts")
