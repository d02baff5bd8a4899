"""Render and apply the manifests in workloads/ (target Service, agents, load).

Manifests are plain YAML with ${VAR} placeholders so they stay readable and usable with
kubectl; this module fills them in and applies them with the official client.
"""

from __future__ import annotations

import string
from pathlib import Path
from typing import Any

import yaml
from kubernetes import client, config, utils

from bench.build.images import AGNHOST
from bench.errors import UserError
from bench.paths import shipped
from bench.poll import WaitTimeout, wait_until
from bench.ready import is_ready

REPO_WORKLOADS = shipped("workloads")


def manifest_path(name: str) -> Path:
    path = REPO_WORKLOADS / name
    if not path.exists():
        raise UserError(f"workload manifest {name!r} not found in {REPO_WORKLOADS}")
    return path


def render(name: str, **values: object) -> list[dict[str, Any]]:
    text = string.Template(manifest_path(name).read_text()).substitute(
        {k: str(v) for k, v in values.items()})
    return [d for d in yaml.safe_load_all(text) if d]


def api_client(kubeconfig: str | Path) -> client.ApiClient:
    path = Path(kubeconfig)
    if not path.exists():
        raise UserError(f"kubeconfig {path} does not exist")
    try:
        return config.new_client_from_config(str(path))
    except Exception as exc:  # noqa: BLE001 - the client raises many types for bad files
        raise UserError(f"kubeconfig {path} is not usable: {exc}") from exc


def ensure_namespace(api: client.ApiClient, name: str) -> None:
    core = client.CoreV1Api(api)
    try:
        core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(
            name=name, labels={"app.kubernetes.io/part-of": "hopbench"})))
    except client.ApiException as exc:
        if exc.status != 409:
            raise


def apply(api: client.ApiClient, docs: list[dict[str, Any]]) -> None:
    utils.create_from_yaml(api, yaml_objects=docs)


def target_image(tag: str) -> str:
    return f"{AGNHOST}:{tag}"


def deploy_target(api: client.ApiClient, namespace: str, name: str, replicas: int,
                  image: str) -> None:
    ensure_namespace(api, namespace)
    apply(api, render("target.yaml", NAME=name, NAMESPACE=namespace, REPLICAS=replicas,
                      IMAGE=image))


def wait_ready_pods(api: client.ApiClient, namespace: str, name: str, count: int,
                    timeout: float = 120) -> list[client.V1Pod]:
    core = client.CoreV1Api(api)

    def enough() -> list[client.V1Pod]:
        pods = core.list_namespaced_pod(
            namespace, label_selector=f"app.kubernetes.io/name={name}").items
        ready = [p for p in pods if is_ready(p)]
        return ready if len(ready) >= count else []

    return wait_until(enough, timeout, 0.2, f"{count} Ready pod(s) of {namespace}/{name}")


def delete_namespace(api: client.ApiClient, name: str, wait: float = 60) -> None:
    core = client.CoreV1Api(api)
    try:
        core.delete_namespace(name)
    except client.ApiException as exc:
        if exc.status == 404:
            return
        raise

    def gone() -> bool:
        try:
            core.read_namespace(name)
        except client.ApiException as exc:
            if exc.status == 404:
                return True
        return False

    try:
        wait_until(gone, wait, 0.5, f"namespace {name} to be deleted")
    except WaitTimeout:
        pass  # still terminating: left to the cluster, as before
