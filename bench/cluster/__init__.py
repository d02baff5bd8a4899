"""Cluster lifecycle: the embedded local cluster (netns nodes, real upstream binaries) and
kind. Creates and removes clusters; measuring one is the providers' job."""
