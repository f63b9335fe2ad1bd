"""The version of cronos (pyproject.toml holds the same; tests/test_cli.py checks that they agree)."""
__version__ = "0.2.0"
