"""The `pushstream` command."""
