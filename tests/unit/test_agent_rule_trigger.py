"""When the rule watcher dumps and which time it stamps (pure: no netlink, no iptables).

At 10,000 Services a kube-proxy iptables sync rewrites ~20,000 rules in one commit; the
kernel sent the commit's notifications 90-320 ms after the new rules were live, so a stamp
from them came after the first request through the rule. The trigger is the ruleset
generation id instead (asked every few ms); a failed targeted listing is retried before
the whole table is dumped; an arming ends a whole dump's spacing and takes the changes
marked before it."""

from __future__ import annotations

import errno
import struct
import subprocess
import threading
import time
from typing import Any

import pytest

from bench.agent import nftnl, rules
from bench.agent.rules import RuleWatcher

CHAIN = "KUBE-SVC-KFRJ5XAXWI6XHHO7"
KEY = "fx/web:http"


def _gen_reply(gen: int) -> bytes:
    body = nftnl.NFGEN.pack(0, 0, 0) + nftnl.attr(nftnl.NFTA_GEN_ID, struct.pack(">I", gen))
    kind = (nftnl.NFNL_SUBSYS_NFTABLES << 8) | nftnl.NFT_MSG_NEWGEN
    return nftnl.HDR.pack(nftnl.HDR.size + len(body), kind, 0, 1, 0) + body


def test_generation_id_is_read_from_the_newgen_reply() -> None:
    assert nftnl.gen_id(_gen_reply(68)) == 68
    err = nftnl.HDR.pack(36, nftnl.NLMSG_ERROR, 0, 1, 0) + struct.pack("=i", -errno.EPERM)
    with pytest.raises(nftnl.NetlinkError) as exc:
        nftnl.gen_id(err + bytes(16))
    assert exc.value.errno == errno.EPERM


class Gens:
    """A generation source: answers from a script, stops the watcher at its end."""

    def __init__(self, w: RuleWatcher, script: list[int | OSError]) -> None:
        self.w, self.script = w, list(script)
        self.times: list[int] = []

    def read(self) -> int:
        if not self.script:
            self.w._stop.set()
            return -2
        self.times.append(time.time_ns())
        r = self.script.pop(0)
        if isinstance(r, OSError):
            raise r
        return r


def test_a_commit_is_stamped_by_the_question_that_saw_its_generation() -> None:
    w = RuleWatcher(lambda *a: None)
    src = Gens(w, [5, 5, 6, 6, 6])
    w._gen, w._gen_seen = src, 5  # type: ignore[assignment]
    for _ in range(5):
        w.check()
    assert w._consume() == pytest.approx(src.times[2], abs=2_000_000)  # gen 6: the 3rd ask
    assert w._consume() is None  # one commit, one dump


def test_an_unanswered_question_marks_a_change_and_quiets_the_asking(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """A failed GETGEN may hide a commit: the dump tells. The prober's next passes (every
    5 ms) do not ask again until GEN_IDLE_S has passed, so a failing socket cannot set
    off a dump per pass."""
    monkeypatch.setattr(rules, "GEN_IDLE_S", 5.0)
    w = RuleWatcher(lambda *a: None)
    src = Gens(w, [OSError(errno.EAGAIN, "timed out"), 5, 5])
    w._gen, w._gen_seen = src, 5  # type: ignore[assignment]
    w.check()
    assert w._consume() is not None
    w.check()
    w.check()
    assert len(src.times) == 1 and w._consume() is None


def test_the_watcher_asks_slowly_on_its_own_until_a_focus_hurries_it(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Its own thread asks every GEN_IDLE_S (its CPU); `hurry` (a focus beginning) ends
    the idle wait at once. The fast questions come from the prober's passes."""
    monkeypatch.setattr(rules, "GEN_IDLE_S", 5.0)
    w = RuleWatcher(lambda *a: None)
    src = Gens(w, [5])
    w._gen, w._gen_seen = src, 5  # type: ignore[assignment]
    t = threading.Thread(target=w._monitor, daemon=True)
    t0 = time.monotonic()
    t.start()
    time.sleep(0.2)
    assert src.times == []  # idle: still waiting out its 5 s
    w.hurry()
    time.sleep(0.1)
    assert len(src.times) == 1  # hurried: asked at once
    w.hurry()  # the script is done: this question stops the watcher
    t.join(2)
    assert not t.is_alive() and time.monotonic() - t0 < 2


def test_the_first_unconsumed_change_gives_the_stamp() -> None:
    w = RuleWatcher(lambda *a: None)
    assert w._consume() is None
    w._mark_dirty(5)
    assert w._consume() == 5
    w._mark_dirty(7)  # a commit during the dump: the next dump, with its own time
    assert w._consume() == 7
    w._mark_dirty(8)
    w._mark_dirty(9)  # coalesced: the earlier of the two
    assert w._consume() == 8


def _listing(rc: int, out: str = "", err: str = "") -> subprocess.CompletedProcess[str]:
    return subprocess.CompletedProcess([], rc, out, err)


def _armed(monkeypatch: pytest.MonkeyPatch, answers: list[subprocess.CompletedProcess[str]],
           calls: list[tuple[int, str, str, bool]]) -> tuple[RuleWatcher, list[list[str]]]:
    cmds: list[list[str]] = []

    def run(cmd: list[str], **_: Any) -> subprocess.CompletedProcess[str]:
        cmds.append(cmd)
        if cmd[0] == "iptables-save":
            return _listing(0, f'-A {CHAIN} -m comment --comment "{KEY} -> 10.0.0.1:80" '
                               f'-j KUBE-SEP-AAAAAAAAAAAAAAAA\n')
        return answers.pop(0)

    monkeypatch.setattr(subprocess, "run", run)
    monkeypatch.setattr(rules, "LIST_RETRIES", (0.0, 0.0))
    w = RuleWatcher(lambda *a: calls.append(a))
    w.mode, w._wanted, w._chains = "iptables", [("10.96.0.9", 80)], {KEY: CHAIN}
    w._routes, w._known = {KEY: {"10.0.0.1"}}, {KEY}
    return w, cmds


NEW = _listing(0, f"-N {CHAIN}\n"
                  f'-A {CHAIN} -m comment --comment "{KEY} -> 10.0.0.1:80" -m statistic '
                  f"--mode random --probability 0.5 -j KUBE-SEP-AAAAAAAAAAAAAAAA\n"
                  f'-A {CHAIN} -m comment --comment "{KEY} -> 10.0.0.2:80" '
                  f"-j KUBE-SEP-BBBBBBBBBBBBBBBB\n")
BUSY = _listing(4, err="iptables v1.8.9 (nf_tables): Resource temporarily unavailable\n")


def test_a_failed_targeted_listing_is_retried_before_a_whole_dump(
        monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[tuple[int, str, str, bool]] = []
    w, cmds = _armed(monkeypatch, [BUSY, NEW], calls)
    w._take(11)
    assert calls == [(11, KEY, "10.0.0.2", True)]
    assert all(c[0] == "iptables" for c in cmds) and len(cmds) == 2  # no iptables-save
    assert w.dumps["targeted_retried"] == 1 and w.dumps["targeted_failed"] == 0
    assert w.dumps["full"] == 0


def test_a_listing_failing_every_retry_is_counted_and_falls_back(
        monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[tuple[int, str, str, bool]] = []
    w, cmds = _armed(monkeypatch, [BUSY, BUSY, BUSY], calls)
    w._take(12)
    assert [c[0] for c in cmds] == ["iptables"] * 3 + ["iptables-save"]
    assert w.dumps["targeted_failed"] == 1 and w.dumps["full"] == 1
    assert calls == []  # the whole table still routes 10.0.0.1 only


def test_an_arming_ends_the_spacing_and_takes_the_changes_before_it(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """A whole dump of d seconds delays the next by 9 d; an arming meanwhile makes the
    next dump a targeted one at once, and a change marked before the arming is in the
    arming's own dump (no pre-arming stamp for a later change)."""
    w = RuleWatcher(lambda *a: None)
    w.mode = "iptables"
    w._next_full = time.monotonic() + 60  # a whole dump of ~7 s just ended
    w._mark_dirty(1)
    t = threading.Thread(target=w._space_full)
    t.start()
    time.sleep(0.1)
    assert t.is_alive()  # still spacing out whole dumps
    monkeypatch.setattr(subprocess, "run", lambda cmd, **_: _listing(
        0, f'-A KUBE-SERVICES -d 10.96.0.9/32 -p tcp -m comment --comment "{KEY} cluster '
           f'IP" -m tcp --dport 80 -j {CHAIN}\n'))
    assert w.watch([("10.96.0.9", 80)]) == {KEY: CHAIN}
    t.join(1.0)
    assert not t.is_alive() and w.scope() == "targeted"
    assert w._consume() is None  # the mark from before the arming: the arming's dump
