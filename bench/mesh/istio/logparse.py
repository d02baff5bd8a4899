"""istiod's log lines that date the mesh hops, parsed. Pure: text in, stamps out.

istiod logs in UTC with microseconds, tab-separated: `<time>\\t<level>\\t<scope>\\t<msg>`.
Three lines matter (docs/design.md §2, the mesh chain):

- `Handle EDS endpoint <svc> <event> in namespace <ns>` (scope kube, debug): its
  EndpointSlice controller handled a slice event of the Service (M1);
- `Push debounce stable[<n>] ...` (scope ads, info): a debounce window ended and the push
  starts. It names only the first changed config, and one window takes every change of
  its time, so the trial's push is the first window to end after its slice was handled (M2);
- `EDS: PUSH[ INC] for node:<proxy id> ...` (scope ads, debug; info for a full push):
  endpoints were sent to one client, after its stream's Send returned (M3[n]).
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass
from typing import Literal

Kind = Literal["slice", "push", "eds"]

_SLICE = re.compile(r"Handle EDS endpoint (?P<svc>\S+) (?P<what>\w+) in namespace (?P<ns>\S+)")
_PUSH = re.compile(r"Push debounce stable\[\d+\]")
_EDS = re.compile(r"EDS: PUSH(?: INC)? for node:(?P<id>\S+)")


@dataclass(frozen=True)
class Stamp:
    """One dated line: `key` is "<ns>/<svc>" (slice), "" (push) or the proxy id (eds)."""

    t_ns: int
    kind: Kind
    key: str


def parse_time(text: str) -> int | None:
    """`2026-12-06T13:40:01.123456Z` into ns since the epoch, None if it is not one."""
    try:
        when = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=dt.UTC)
    return int(when.timestamp()) * 1_000_000_000 + when.microsecond * 1000


def parse_line(line: str) -> Stamp | None:
    """The stamp a log line carries, or None for every other line."""
    head, sep, rest = line.partition("\t")
    if not sep:
        return None
    if (m := _SLICE.search(rest)) is not None:
        kind: Kind = "slice"
        key = f"{m['ns']}/{m['svc']}"
    elif _PUSH.search(rest) is not None:
        kind, key = "push", ""
    elif (m := _EDS.search(rest)) is not None:
        kind, key = "eds", m["id"]
    else:
        return None
    t = parse_time(head.strip())
    return None if t is None else Stamp(t, kind, key)


def proxy_id(node: str, service: str, namespace: str) -> str:
    """The id the node's mesh client gives its channel to `service` (meshclient/): one
    per (node, Service), so an EDS push names both."""
    return f"hbmesh-{node}-{service}.{namespace}"
