"""Kubernetes manifests from the model config (`auto-infer k8s`)."""
