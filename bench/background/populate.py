"""Create, reuse, resize and remove the background population, bulk and concurrent.

`Population.ensure(N, M)` lists what the run's background namespace already holds (by
label) and does only the difference: creates missing Services and slices, rewrites
slices whose endpoint count is not M, deletes Services and slices at index N and above.
So one population serves every mode and every sweep point whose count allows.

The requests go through the run's one client (bench.kube.Kube) from a pool of WORKERS
threads; each blocking call is a task on the client's event loop, so WORKERS requests are
in flight at once over httpx's connection pool. `remove_all` deletes the namespace and
waits until it is gone (the namespace controller removes what is in it).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from concurrent.futures import FIRST_EXCEPTION, Future, ThreadPoolExecutor, wait
from typing import Any, TypedDict

from bench.background import plan
from bench.kube import KEEPALIVE, ApiStatusError, Kube
from bench.poll import wait_until

WORKERS = KEEPALIVE  # requests in flight; more than the client keeps open cost handshakes
SLICES = "/apis/discovery.k8s.io/v1/namespaces/{ns}/endpointslices"
SERVICES = "/api/v1/namespaces/{ns}/services"
Progress = Callable[[int, int], None]


class Fill(TypedDict):
    """What `ensure` did: run.json's `points[label].fill`."""

    created: int          # Services and slices created
    deleted: int          # Services and slices deleted (the count shrank)
    updated: int          # slices rewritten (the endpoints per Service changed)
    seconds: float
    objects_per_s: float  # (created + deleted + updated) / seconds; 0 when nothing to do


class Population:
    """The background objects of one run, in namespace `plan.namespace(run_id)`."""

    def __init__(self, kube: Kube, run_id: str, on_progress: Progress | None = None,
                 workers: int = WORKERS) -> None:
        self.kube = kube
        self.run_id = run_id
        self.namespace = plan.namespace(run_id)
        self.on_progress = on_progress
        self.workers = workers
        self.services = 0   # after ensure: the population's N and M
        self.endpoints = 0
        self._lock = threading.Lock()

    # --- reading what is there ---------------------------------------------------------
    def existing(self) -> tuple[dict[int, dict[str, Any]], dict[int, dict[str, Any]]]:
        """Background Services and slices of this run, by index."""
        sel = plan.selector(self.run_id)
        svcs = self.kube.list(SERVICES.format(ns=self.namespace), labelSelector=sel)
        slices = self.kube.list(SLICES.format(ns=self.namespace), labelSelector=sel)
        return _by_index(svcs), _by_index(slices)

    # --- ensure --------------------------------------------------------------------------
    def ensure(self, services: int, endpoints: int) -> Fill:
        """Make the namespace hold exactly `services` Services with `endpoints` endpoints
        each; creates, rewrites and deletes only the difference."""
        plan.check_fits(services, endpoints, None, None)
        t0 = time.monotonic()
        self._ensure_namespace()
        svcs, slices = self.existing()
        ns = self.namespace
        tasks: list[tuple[str, Callable[[], None]]] = []
        for i in range(services):
            if i not in svcs:
                tasks.append(("create", _bind(self._create, SERVICES.format(ns=ns),
                                              plan.service(i, self.run_id, ns))))
            if i not in slices:
                tasks.append(("create", _bind(self._create, SLICES.format(ns=ns),
                                              plan.slice_(i, endpoints, self.run_id, ns))))
            elif plan.slice_endpoints(slices[i]) != endpoints:
                tasks.append(("update", _bind(self._patch, i, endpoints)))
        for i in sorted(set(svcs) | set(slices)):
            if i >= services:
                for coll, have in ((SERVICES, svcs), (SLICES, slices)):
                    if i in have:
                        path = f"{coll.format(ns=ns)}/{plan.service_name(i)}"
                        tasks.append(("delete", _bind(self._delete, path)))
        self._run([fn for _, fn in tasks])
        self.services, self.endpoints = services, endpoints
        seconds = time.monotonic() - t0
        count = {k: sum(1 for kind, _ in tasks if kind == k)
                 for k in ("create", "delete", "update")}
        return Fill(created=count["create"], deleted=count["delete"], updated=count["update"],
                    seconds=round(seconds, 3),
                    objects_per_s=round(len(tasks) / seconds, 1) if tasks else 0.0)

    def _ensure_namespace(self) -> None:
        # a namespace still terminating from an earlier remove refuses new objects: wait
        # until it is gone, then create it again
        wait_until(self._namespace_active, 300, 0.5,
                   f"namespace {self.namespace} to be active")

    def _namespace_active(self) -> bool:
        obj = self.kube.get(f"/api/v1/namespaces/{self.namespace}")
        if obj is not None:
            return (obj.get("status") or {}).get("phase") == "Active"
        self._create("/api/v1/namespaces", {
            "apiVersion": "v1", "kind": "Namespace",
            "metadata": {"name": self.namespace, "labels": plan.labels(self.run_id)}})
        return False

    def _create(self, path: str, obj: dict[str, Any]) -> None:
        try:
            self.kube.create(path, obj)
        except ApiStatusError as exc:
            if exc.status != 409:  # created meanwhile: fine
                raise

    def _patch(self, i: int, endpoints: int) -> None:
        path = f"{SLICES.format(ns=self.namespace)}/{plan.service_name(i)}"
        self.kube.patch(path, {"endpoints": plan.endpoint_list(i, endpoints)})

    def _delete(self, path: str) -> None:
        self.kube.delete(path)

    def _run(self, tasks: list[Callable[[], None]]) -> None:
        """Run every task on the pool; the first error stops the rest and is raised."""
        total = len(tasks)
        if self.on_progress:
            self.on_progress(0, total)
        if not tasks:
            return
        done = 0

        def one(fn: Callable[[], None]) -> None:
            nonlocal done
            fn()
            with self._lock:  # under the lock: the counts a progress bar sees only grow
                done += 1
                if self.on_progress:
                    self.on_progress(done, total)

        pool = ThreadPoolExecutor(max_workers=self.workers, thread_name_prefix="bg-fill")
        try:
            futures: list[Future[None]] = [pool.submit(one, fn) for fn in tasks]
            finished, _ = wait(futures, return_when=FIRST_EXCEPTION)
            for f in finished:
                if f.exception() is not None:
                    raise f.exception()  # type: ignore[misc]
        finally:
            pool.shutdown(wait=True, cancel_futures=True)

    # --- removal -------------------------------------------------------------------------
    def remove_all(self, wait_s: float = 300) -> int:
        """Delete the namespace and wait until it is gone; the number of background objects
        it held (0 if there was none)."""
        path = f"/api/v1/namespaces/{self.namespace}"
        if self.kube.get(path) is None:
            return 0
        svcs, slices = self.existing()
        self.kube.delete(path)
        wait_until(lambda: self.kube.get(path) is None, wait_s, 0.5,
                   f"namespace {self.namespace} to be deleted")
        self.services = self.endpoints = 0
        return len(svcs) + len(slices)


def leftover_namespaces(kube: Kube) -> list[str]:
    """Background namespaces of any run (one a killed run left behind, say)."""
    return [str(n["metadata"]["name"]) for n in kube.list(
        "/api/v1/namespaces", labelSelector=plan.selector())]


def _by_index(items: list[dict[str, Any]]) -> dict[int, dict[str, Any]]:
    out = {}
    for obj in items:
        i = plan.index_of(str(obj.get("metadata", {}).get("name", "")))
        if i is not None:
            out[i] = obj
    return out


def _bind(fn: Callable[..., None], *args: Any) -> Callable[[], None]:
    return lambda: fn(*args)

