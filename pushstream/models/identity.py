"""How pushstream names a device address anywhere but towards its provider: by its fingerprint."""

import hashlib


def token_fingerprint(platform: str, token: str) -> str:
    """A short stable id for a token or Web Push endpoint: safe to show, log and key by."""
    return hashlib.sha256(f"{platform}:{token}".encode()).hexdigest()[:16]
