"""The node agent: probes a Service over new connections, watches the node's rules and
kube-proxy's sync metric, and reports state changes. Standard library only, so the same
code runs as a process in a local node's namespace or in a hostNetwork DaemonSet."""
