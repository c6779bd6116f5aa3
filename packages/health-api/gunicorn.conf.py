"""Gunicorn configuration of the health API (``gunicorn -c packages/health-api/gunicorn.conf.py``).

The settings live in the installed package, so a deployed copy can use
``gunicorn -c python:asset_post_process.health_api.gunicorn_conf`` with no path at all.
"""

from asset_post_process.health_api.gunicorn_conf import *  # noqa: F403
