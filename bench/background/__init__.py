"""The background population: N selector-less Services with M fake endpoints each, the wait
until every node's kube-proxy has programmed them, and churn on them during the trials."""
