"""Test and development support shipped with pushstream (fake push providers)."""
