"""Routes for people and scripts: ``/queues`` and the dead-letter store (list, show, replay, purge)."""

from __future__ import annotations

import time
import uuid
from typing import Annotated

from fastapi import APIRouter, Depends, HTTPException, Query, status

from asset_post_process.common.deadletters import DeadLetterFilter
from asset_post_process.common.figures import aread_figures
from asset_post_process.health_api.auth import require_operator
from asset_post_process.health_api.models import (
    DeadLetterDetail,
    DeadLetterList,
    DeadLetterSummary,
    DelayedFigures,
    ListQuery,
    Problem,
    PurgeQuery,
    PurgeResult,
    QueuesReport,
    ReplayResult,
    Selection,
)
from asset_post_process.health_api.resources import Resources, get_resources

router = APIRouter()

ResourcesDep = Annotated[Resources, Depends(get_resources)]
UNAVAILABLE: dict[int | str, dict[str, object]] = {503: {"model": Problem, "description": "Redis did not answer."}}
GUARDED: dict[int | str, dict[str, object]] = {
    **UNAVAILABLE,
    401: {"model": Problem, "description": "Missing or wrong operator token."},
    404: {"model": Problem, "description": "Not found, or operator routes off (no POSTPROCESS_OPERATOR_TOKEN)."},
}


@router.get("/queues", response_model=QueuesReport, responses=UNAVAILABLE, tags=["figures"])
async def queues(resources: ResourcesDep) -> QueuesReport:
    """Queue depths, in-flight and delayed messages, dead letters, live workers and addon outcomes."""
    figures = await aread_figures(
        resources.store,
        resources.keys,
        resources.queues,
        resources.settings.heartbeat_ttl_seconds,
        broker=resources.broker,
        with_latency=False,
    )
    data = figures.to_dict()
    return QueuesReport(
        queues=data["queues"],
        unacked=data["unacked"],
        delayed=DelayedFigures(**data["delayed"]),
        dead_letters=data["dead_letters"],
        workers=data["workers"],
        outcomes=data["outcomes"],
    )


@router.get("/dead-letters", response_model=DeadLetterList, responses=UNAVAILABLE, tags=["dead letters"])
def list_dead_letters(resources: ResourcesDep, query: Annotated[ListQuery, Query()]) -> DeadLetterList:
    """Dead letters matching every given filter, newest first, without their messages."""
    store = resources.dead_letters
    letters = store.list(query.filter(), limit=query.limit)
    now = time.time()
    items = [DeadLetterSummary.of(letter, now) for letter in letters]
    return DeadLetterList(total=store.count(), count=len(items), items=items)


@router.get(
    "/dead-letters/{letter_id:uuid}",
    response_model=DeadLetterDetail,
    responses=GUARDED,
    dependencies=[Depends(require_operator)],
    tags=["dead letters"],
)
def show_dead_letter(resources: ResourcesDep, letter_id: uuid.UUID) -> DeadLetterDetail:
    """One dead letter with its message (operator token required: the message is shown)."""
    letter = resources.dead_letters.get(letter_id.hex)
    if letter is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no dead letter {letter_id.hex}")
    return DeadLetterDetail.of(letter)


@router.post(
    "/dead-letters/replay",
    response_model=ReplayResult,
    responses={**GUARDED, 400: {"model": Problem, "description": "The body is not JSON."}},
    dependencies=[Depends(require_operator)],
    tags=["dead letters"],
)
def replay_dead_letters(resources: ResourcesDep, selection: Selection) -> ReplayResult:
    """Send the selected replayable dead letters back to their queue, then delete them.

    ``ids`` select by id (any filter is then ignored); else the filter selects, or ``all`` selects everything.
    """
    replayed = resources.dead_letters.replay(resources.send, selection.filter(), ids=selection.ids)
    return ReplayResult(replayed=replayed)


@router.delete(
    "/dead-letters",
    response_model=PurgeResult,
    responses={**GUARDED, 400: {"model": Problem, "description": "Nothing selected."}},
    dependencies=[Depends(require_operator)],
    tags=["dead letters"],
)
def purge_dead_letters(resources: ResourcesDep, query: Annotated[PurgeQuery, Query()]) -> PurgeResult:
    """Delete the dead letters matching every given filter (or all of them with ``all=true``)."""
    flt = query.filter()
    if flt == DeadLetterFilter() and not query.all:
        raise HTTPException(status.HTTP_400_BAD_REQUEST, "give a filter, or all=true to purge every dead letter")
    return PurgeResult(purged=resources.dead_letters.purge(flt))
