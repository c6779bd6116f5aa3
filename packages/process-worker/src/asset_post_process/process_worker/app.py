"""The process worker's Celery app: ``celery -A asset_post_process.process_worker.app worker``."""

from __future__ import annotations

from asset_post_process.common.celeryapp import make_celery
from asset_post_process.common.settings import get_settings
from asset_post_process.common.worker import setup_worker
from asset_post_process.process_worker.tasks import register_tasks

settings = get_settings()
app = make_celery("asset-post-process-process-worker", settings)
app.conf.worker_pool = settings.process_pool
app.conf.worker_concurrency = settings.process_concurrency
setup_worker(app, "process", settings)
process_asset = register_tasks(app)
