"""APNs (HTTP/2 provider API, token auth)."""
