"""The trigger worker's Celery app: ``celery -A asset_post_process.trigger_worker.app worker``."""

from __future__ import annotations

from asset_post_process.common.celeryapp import make_celery
from asset_post_process.common.settings import get_settings
from asset_post_process.common.worker import setup_worker
from asset_post_process.trigger_worker.tasks import register_tasks

settings = get_settings()
app = make_celery("asset-post-process-trigger-worker", settings)
app.conf.worker_pool = settings.trigger_pool
app.conf.worker_concurrency = settings.trigger_concurrency
setup_worker(app, "trigger", settings)
trigger_addon = register_tasks(app)
