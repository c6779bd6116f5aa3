"""The trigger worker of asset-post-process."""
