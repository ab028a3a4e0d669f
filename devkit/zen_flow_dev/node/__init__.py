"""A real node for the local cluster: containerd, a kubelet and kube-proxy in a network namespace of
their own, a local image registry, and the host clean-up that goes with them (the `node` profile)."""
