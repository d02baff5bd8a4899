"""The kubeconfig provider (`hopbench run --kubeconfig PATH`), one step per module:
preflight, discovery, deploy, clocks, cleanup; provider.py composes them."""
