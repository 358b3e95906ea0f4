//! Which cluster to talk to: in-cluster config, a kubeconfig, or the embedded server.
