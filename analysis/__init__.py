"""Loading, statistics and plots of hopbench run directories (never imports a Kubernetes client)."""
