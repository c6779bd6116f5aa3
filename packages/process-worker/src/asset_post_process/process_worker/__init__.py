"""The process worker of asset-post-process."""
