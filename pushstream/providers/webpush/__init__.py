"""Web Push (RFC 8030 delivery, VAPID RFC 8292, aes128gcm RFC 8291) on `cryptography` and aiohttp."""
