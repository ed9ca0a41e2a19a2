"""2api benchmark harness: `python -m bench <scenario>` (see bench/README.md)."""
