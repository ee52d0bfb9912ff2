"""FCM HTTP v1 (httpx over HTTP/2, google-auth service-account tokens)."""
