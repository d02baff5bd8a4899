"""The agent's manifests render to what the issue asks for: privileged hostNetwork
DaemonSet on every node, no API access, its own namespace; plain ${VAR} placeholders."""

from __future__ import annotations

import re
from typing import Any

from bench import workloads

VALUES: dict[str, object] = {
    "NAMESPACE": "hopbench-system", "IMAGE": "localhost/hopbench/agent:t",
    "PULL_POLICY": "Never", "PORT": 10299, "TOKEN": "s3cret", "PROBE_INTERVAL_MS": 5.0,
    "METRICS_PORT": 10249, "MAX_LIFETIME_S": 21600}


def _docs() -> dict[str, dict[str, Any]]:
    docs = (workloads.render("agent/namespace.yaml", NAMESPACE="hopbench-system")
            + workloads.render("agent/daemonset.yaml", **VALUES))
    return {d["kind"]: d for d in docs}


def test_every_object_is_labelled_and_namespaced() -> None:
    docs = _docs()
    assert set(docs) == {"Namespace", "ServiceAccount", "Secret", "DaemonSet"}
    for kind, d in docs.items():
        assert d["metadata"]["labels"]["app.kubernetes.io/part-of"] == "hopbench"
        if kind != "Namespace":
            assert d["metadata"]["namespace"] == "hopbench-system"
    labels = docs["Namespace"]["metadata"]["labels"]
    assert labels["pod-security.kubernetes.io/enforce"] == "privileged"


def test_least_rbac() -> None:
    docs = _docs()
    assert docs["ServiceAccount"]["automountServiceAccountToken"] is False
    assert not {"Role", "ClusterRole", "RoleBinding", "ClusterRoleBinding"} & set(docs)
    pod = docs["DaemonSet"]["spec"]["template"]["spec"]
    assert pod["serviceAccountName"] == "hopbench-agent"
    assert pod["automountServiceAccountToken"] is False


def test_daemonset_shape() -> None:
    ds = _docs()["DaemonSet"]
    pod = ds["spec"]["template"]["spec"]
    assert pod["hostNetwork"] is True and "hostPID" not in pod
    assert pod["tolerations"] == [{"operator": "Exists"}]
    (c,) = pod["containers"]
    assert c["securityContext"] == {"privileged": True}
    assert c["image"] == VALUES["IMAGE"] and c["imagePullPolicy"] == "Never"
    assert not c.get("volumeMounts") and not pod.get("volumes")
    env = {e["name"]: e for e in c["env"]}
    assert env["NODE_NAME"]["valueFrom"]["fieldRef"]["fieldPath"] == "spec.nodeName"
    assert env["POD_IP"]["valueFrom"]["fieldRef"]["fieldPath"] == "status.podIP"
    assert env["HOPBENCH_TOKEN"]["valueFrom"]["secretKeyRef"] == {
        "name": "hopbench-agent-token", "key": "token"}
    assert c["ports"][0]["containerPort"] == 10299
    assert c["readinessProbe"]["httpGet"] == {"path": "/healthz", "port": 10299}
    assert c["args"] == ["--probe-interval-ms", "5.0", "--metrics-port", "10249",
                         "--max-lifetime", "21600"]
    assert "limits" not in c["resources"]  # a CPU limit would throttle the prober
    assert _docs()["Secret"]["stringData"] == {"token": "s3cret"}


def test_placeholders_are_plain_variables() -> None:
    """${VAR} only, so `envsubst < daemonset.yaml | kubectl apply -f -` works too."""
    for name in ("namespace.yaml", "daemonset.yaml"):
        text = workloads.manifest_path(f"agent/{name}").read_text()
        assert not re.search(r"\$\(", text)
        assert set(re.findall(r"\$\{(\w+)\}", text)) <= set(VALUES)
