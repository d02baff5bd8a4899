"""Service meshes: a second discovery path fed by the same EndpointSlices as kube-proxy.

A mesh is registered by name (bench.mesh.registry); each one brings its control plane up on
the local cluster, tells the node agents where its discovery server is, and records its
own hops through a source of its own (bench.sources). kube-proxy stays the implicit path.
"""
