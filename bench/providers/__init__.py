"""Providers yield a cluster to measure: kubeconfig, nodes, agents, proxy-mode switching."""
