"""The harness's one reader of Prometheus text (kube-proxy's /metrics).

Every place that needs a number from a component's /metrics page (the last sync stamp
while a cluster comes up or switches mode, the network-programming histogram around each
mode, the build version an agent relays) parses it here, with prometheus_client's own
text parser, and picks series by name and labels. The node agent keeps its stdlib
reader (bench/agent/kpmetrics.py): it runs in an image that carries no harness package.

Label matching is lenient in one way on purpose: a label the series does not carry does
not exclude it. kube-proxy labels its sync series with `ip_family` only in dual-stack
mode, so `value(samples, SYNC, ip_family="IPv4")` reads the unlabelled series of a
single-stack kube-proxy and the IPv4 one of a dual-stack kube-proxy, never the IPv6 one.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from prometheus_client.parser import text_string_to_metric_families

from bench.errors import ClusterError

#: kube-proxy's last successful sync of the node's rules (unix seconds)
SYNC_TIMESTAMP = "kubeproxy_sync_proxy_rules_last_timestamp_seconds"
SYNC_DURATION = "kubeproxy_sync_proxy_rules_duration_seconds"  # every sync, full or partial
#: kube-proxy's histogram of object change -> rules programmed (seconds)
NETWORK_PROGRAMMING = "kubeproxy_network_programming_duration_seconds"
#: istiod's histogram of push start (after debounce) -> sent to a client (seconds)
MESH_CONVERGENCE = "pilot_proxy_convergence_time"
#: every component's build info; the version is in its `git_version` label
BUILD_INFO = "kubernetes_build_info"


class MetricsParseError(ClusterError, ValueError):
    """A /metrics page that is not Prometheus text (a ValueError too, as the parser's own)."""


@dataclass(frozen=True)
class Sample:
    name: str                      # the series name as exposed, e.g. NAME_bucket
    labels: dict[str, str] = field(default_factory=dict)
    value: float = 0.0


@dataclass(frozen=True)
class Histogram:
    """Cumulative bucket counts, by increasing upper bound (the last one is +Inf)."""

    upper_bounds_s: list[float]
    counts: list[float]


def parse(text: str) -> list[Sample]:
    """Every sample of a Prometheus text exposition, in page order."""
    try:
        return [Sample(s.name, dict(s.labels), float(s.value))
                for family in text_string_to_metric_families(text) for s in family.samples]
    except (ValueError, TypeError, IndexError) as exc:
        first = next((ln for ln in text.splitlines() if ln.strip()), "")[:80]
        raise MetricsParseError(f"not Prometheus text ({exc}); it starts {first!r}") from exc


def _matches(sample: Sample, name: str, labels: dict[str, str]) -> bool:
    return sample.name == name and all(
        sample.labels.get(k, v) == v for k, v in labels.items())


def find(samples: list[Sample], name: str, **labels: str) -> Sample | None:
    """The first sample of series `name` whose labels do not contradict `labels`."""
    return next((s for s in samples if _matches(s, name, labels)), None)


def value(samples: list[Sample], name: str, default: float | None = None,
          **labels: str) -> float | None:
    s = find(samples, name, **labels)
    return s.value if s is not None else default


def label(samples: list[Sample], name: str, key: str, **labels: str) -> str | None:
    """A label's value on the first matching sample, e.g. BUILD_INFO's git_version."""
    s = find(samples, name, **labels)
    return s.labels.get(key) if s is not None else None


def histogram(samples: list[Sample], name: str, **labels: str) -> Histogram:
    """The buckets of histogram `name` (its NAME_bucket series); empty when absent."""
    pairs = sorted((float(s.labels["le"]), s.value) for s in samples
                   if "le" in s.labels and _matches(s, name + "_bucket", labels))
    return Histogram([le for le, _ in pairs], [c for _, c in pairs])


def bound_label(upper_bound_s: float) -> float | str:
    """An upper bound as run.json stores it: a number, or the string "+Inf"."""
    return "+Inf" if math.isinf(upper_bound_s) else upper_bound_s


def last_sync_s(text: str) -> float:
    """kube-proxy's last successful sync from its /metrics text (unix s; 0 before any)."""
    return last_sync(text)[0]


def last_sync(text: str) -> tuple[float, int]:
    """kube-proxy's last successful sync (unix s; 0 before any) and how many syncs it has
    made: when that count is 1, the stamp is its first sync's end."""
    samples = parse(text)
    stamp = value(samples, SYNC_TIMESTAMP, default=0.0, ip_family="IPv4") or 0.0
    syncs = value(samples, SYNC_DURATION + "_count", default=0.0, ip_family="IPv4") or 0.0
    return stamp, int(syncs)
