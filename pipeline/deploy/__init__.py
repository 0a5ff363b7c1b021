"""Deployment targets for the exported models: a Triton model repository (``triton``), an MLflow
registry (``mlflow_registry``) and the Kubernetes manifests' checks (``kubernetes_check``)."""
