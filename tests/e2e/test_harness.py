"""The harness itself: extra stacks in the same Redis stay apart from the session's service."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from asset_post_process.common.producer import EventProducer
from asset_post_process.devkit import factory
from asset_post_process.devkit.launcher import ServiceStack
from asset_post_process.devkit.simulator import SimulatorClient


def test_an_extra_stack_never_takes_the_session_services_events(
    service: ServiceStack,
    producer: EventProducer,
    sim: SimulatorClient,
    new_account: Callable[..., factory.Account],
    stack_factory: Callable[..., ServiceStack],
    wait_until: Callable[..., Any],
) -> None:
    extra = stack_factory({"POSTPROCESS_PROCESS_CONCURRENCY": "2"})
    assert extra.settings.process_queue != service.settings.process_queue
    assert extra.settings.key_prefix != service.settings.key_prefix
    assert extra.settings.process_concurrency == 2

    settings = factory.user_settings(factory.addon("FACE_RECOGNITION", events=["file-saved"]))
    mine, theirs = factory.image_asset(), factory.image_asset()
    account = new_account(settings, [mine, theirs])
    producer.enqueue_asset_event(apikey=account.apikey, asset_id=mine["id"], event_type="file-saved")
    extra.producer().enqueue_asset_event(apikey=account.apikey, asset_id=theirs["id"], event_type="file-saved")

    for asset in (mine, theirs):
        wait_until(lambda a=asset: sim.count(asset_id=a["id"], addon="FACE_RECOGNITION") == 1, timeout=30)
    assert len(service.decisions().latest(mine["id"])) == 1
    assert service.decisions().latest(theirs["id"]) == []
    assert len(extra.decisions().latest(theirs["id"])) == 1
    assert extra.decisions().latest(mine["id"]) == []
