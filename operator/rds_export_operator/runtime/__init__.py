"""The process around the capabilities: settings, leader election, probes, metrics, the Kubernetes API client,
the identity ConfigMap source, and kopf plumbing (spawning, idle bodies). Imports aws/ and api/, no capability."""
