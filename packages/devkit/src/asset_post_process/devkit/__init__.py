"""Development kit of asset-post-process: never deployed, never imported by production packages."""
