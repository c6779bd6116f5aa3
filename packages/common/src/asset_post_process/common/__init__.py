"""The shared foundation of asset-post-process: contract, settings, crypto, Redis stores, FileSpin client."""
