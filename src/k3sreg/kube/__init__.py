"""Kubernetes manifests of a k3sreg deployment, as data (`k3sreg deploy render`); no server or storage imports.

    spec.py      the flags (DeploySpec) and their checks: DNS-1123 names, NodePort range, quantities
    config.py    the pod's config.yml: storage mount, port, health check, secrets moved into a Secret
    objects.py   Namespace, PVC, ConfigMap, Secrets, Deployment, Service, Ingress, HelmChartConfig
    render.py    the objects in apply order, as one YAML stream or one file each; the nodes' registries.yaml
"""
