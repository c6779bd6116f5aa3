"""``make bench``: the service's real workers under load, side by side with a bare Celery pipeline.

``python -m asset_post_process.devkit.bench`` starts its own Redis, the FileSpin simulator (in its own process)
and the real worker programs, runs each measurement and prints one table (see ``docs/performance.md``).

- :mod:`.floor`: the bare Celery two-hop pipeline (the floor the real pipeline is compared with);
- :mod:`.loadgen`: users and assets in the simulator, messages, pre-filled and paced producers;
- :mod:`.measure`: figures read from the machine (peak RSS, Redis command counts, percentiles, redis-benchmark);
- :mod:`.table`: the printed table;
- :mod:`.runner`: the scenarios, in one run.
"""
