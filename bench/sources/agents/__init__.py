"""Talk to the node agents and keep what they observed, per node, on the harness side.

The agents report state changes (rule IPs appearing/leaving, kube-proxy syncs, the first
and last answer from each pod, runs of failed requests). One module per job:

- wire.py       the Transport to an agent and the typed /collect reply
- control.py    arm, focus, forget, disarm (requests to every agent)
- clocks.py     each node's clock offset to the harness (round trips)
- collector.py  the thread that drains /collect into a NodeLog per node
- nodelog.py    a node's accumulated log, and how a reply folds into it
- queries.py    what a scenario asks while it waits (first answer, rule change, synced)
- events.py     pure translation of the logs in a trial's window into EventRows
- store.py      AgentStore, the facade a run holds (bench.runner, the scenario lanes)

Clocks: an agent on the harness's own kernel stamps on the harness clock (offset exactly
0, clock "harness"); any other agent's rows carry its estimated offset and uncertainty.
"""

from bench.sources.agents.clocks import SHARED_CLOCK, ClockOffset, boot_id, estimate_offset
from bench.sources.agents.nodelog import NodeLog
from bench.sources.agents.store import AgentStore
from bench.sources.agents.wire import CollectReply, Transport

__all__ = ["SHARED_CLOCK", "AgentStore", "ClockOffset", "CollectReply", "NodeLog",
           "Transport", "boot_id", "estimate_offset"]
