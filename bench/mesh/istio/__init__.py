"""Istio as hopbench's mesh: istiod (pilot-discovery) and proxyless gRPC clients."""
