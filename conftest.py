"""Fixtures shared by every package's tests (Redis, key space, Fernet key): see asset_post_process.devkit.testing."""

pytest_plugins = ["asset_post_process.devkit.testing"]
