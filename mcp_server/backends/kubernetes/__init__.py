"""The Kubernetes cluster backend (API client, job kinds, the ClusterBackend)."""
