"""Health, metrics and dead-letter API of asset-post-process."""
