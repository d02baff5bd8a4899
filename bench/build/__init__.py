"""Build tooling: the Go build of pinned upstream binaries, OCI image archives, the agent
image, kind config generation and the host checks. Never imported by the run path."""
