"""The planning rules: one table row per condition and reason, then properties over random inputs."""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from typing import Any

import pytest
from hypothesis import HealthCheck, Phase, find, given, settings
from hypothesis import strategies as st

from asset_post_process.common.contract import Action, AssetEvent, EventType
from asset_post_process.common.filespin_models import AddonSettings, AssetData, UserSettings
from asset_post_process.common.registry import AddonRegistry
from asset_post_process.process_worker.matching import content_type_matches_any
from asset_post_process.process_worker.planner import Decision, ReasonCode, candidates, plan

ASSET_ID = "0123456789abcdef0123456789abcdef"
FR, SCENE, EMOTION, STORY, NOMARK = (
    "FACE_RECOGNITION",
    "SCENE_CLASSIFICATION",
    "EMOTION_RECOGNITION",
    "STORYBOARD",
    "NOMARK",
)
REGISTRY = AddonRegistry.build(
    "http://filespin.test",
    overrides={
        STORY: {
            "path": "/api/v1/assets/{asset_id}/addons/storyboard",
            "accepts": ["video/*"],
            "output_fields": ["_filespin_storyboard"],
        },
        NOMARK: {"path": "/api/v1/assets/{asset_id}/addons/nomark"},
        EMOTION: {"processed_marker": "emotion_done"},
    },
)
RUN_CODES = {ReasonCode.RUN, ReasonCode.FORCED, ReasonCode.DELETE}


def hook(enabled: bool = True, types: Any = ("image/*",), criteria: Any = None) -> dict[str, Any]:
    listed = types if types is None or isinstance(types, str) else list(types)
    block: dict[str, Any] = {"enabled": enabled, "content_types": listed}
    if criteria is not None:
        block["schema_criteria"] = criteria
    return block


def block(
    hooks: dict[str, Any] | None = None,
    *,
    added: Any = True,
    enabled: Any = True,
    disposition: dict[str, Any] | None = None,
    spelling: str = "event-hooks",
) -> dict[str, Any]:
    hooks = {"file-saved": hook()} if hooks is None else hooks
    return {
        "title": "t",
        "added": added,
        "enabled": enabled,
        "settings": {spelling: hooks, "disposition": disposition or {"update_metadata": True}},
    }


@dataclass
class Case:
    """One row: an event, the user's addon blocks and an asset -> the expected decisions."""

    id: str
    expected: list[tuple[str, bool, ReasonCode]]
    addons_settings: dict[str, Any] = field(default_factory=dict)
    event_type: str = "file-saved"
    addons: list[str] = field(default_factory=list)
    force: bool = False
    asset: dict[str, Any] = field(default_factory=lambda: {"content_type": "image/jpeg", "status": "OK"})


def make_event(case_type: str, addons: list[str], force: bool, asset: dict[str, Any]) -> AssetEvent:
    deleted = case_type == EventType.FILE_DELETED.value
    return AssetEvent.model_validate(
        {
            "apikey": "gAAAAA-not-decrypted-by-the-planner",
            "asset_id": ASSET_ID,
            "event_type": case_type,
            "addons": addons,
            "force_processing": force,
            "asset_data": {"id": ASSET_ID, **asset} if deleted else None,
        }
    )


def run_case(case: Case) -> list[Decision]:
    event = make_event(case.event_type, case.addons, case.force, case.asset)
    return plan(event, AssetData.from_api(case.asset), UserSettings(addons=case.addons_settings), REGISTRY)


IMAGE = {"content_type": "image/jpeg", "status": "OK"}
FDU = "file-data-updated"


def fdu_block(criteria: Any) -> dict[str, Any]:
    return block({FDU: hook(criteria=criteria)})


def data_asset(data: dict[str, Any], schema_id: Any = 1, content_type: str = "image/png") -> dict[str, Any]:
    return {"content_type": content_type, "status": "OK", "data_schema_id": schema_id, "data": data}


CASES = [
    # --- candidates and the user's addon blocks
    Case("runs", [(FR, True, ReasonCode.RUN)], {FR: block()}),
    Case("event_hooks spelling", [(FR, True, ReasonCode.RUN)], {FR: block(spelling="event_hooks")}),
    Case(
        "hooks under both spellings",
        [(FR, True, ReasonCode.RUN)],
        {
            FR: {
                "added": True,
                "enabled": True,
                "settings": {"event-hooks": {"file-deleted": hook()}, "event_hooks": {"file-saved": hook()}},
            }
        },
    ),
    Case(
        "derived candidates skip not added/enabled",
        [(FR, True, ReasonCode.RUN), (EMOTION, True, ReasonCode.RUN)],
        {FR: block(), SCENE: block(added=False), EMOTION: block(), NOMARK: block(enabled=False)},
    ),
    Case("no addons at all", [], {}),
    Case(
        "listed unknown addon",
        [("BG_REMOVE", False, ReasonCode.UNKNOWN_ADDON)],
        {"BG_REMOVE": block()},
        addons=["BG_REMOVE"],
    ),
    Case(
        "enabled unknown addon",
        [("BG_REMOVE", False, ReasonCode.UNKNOWN_ADDON), (FR, True, ReasonCode.RUN)],
        {"BG_REMOVE": block(), FR: block()},
    ),
    Case(
        "lower-case unknown key in settings", [("bg_remove", False, ReasonCode.UNKNOWN_ADDON)], {"bg_remove": block()}
    ),
    Case("listed but not in settings", [(SCENE, False, ReasonCode.NOT_IN_SETTINGS)], {FR: block()}, addons=[SCENE]),
    Case("listed but not added", [(FR, False, ReasonCode.NOT_ADDED)], {FR: block(added=False)}, addons=[FR]),
    Case("listed but not enabled", [(FR, False, ReasonCode.NOT_ENABLED)], {FR: block(enabled=False)}, addons=[FR]),
    Case(
        "listed limits the candidates", [(SCENE, True, ReasonCode.RUN)], {FR: block(), SCENE: block()}, addons=[SCENE]
    ),
    Case(
        "listed order is kept",
        [(SCENE, True, ReasonCode.RUN), (FR, True, ReasonCode.RUN)],
        {FR: block(), SCENE: block()},
        addons=[SCENE, FR],
    ),
    Case("block is a list", [(FR, False, ReasonCode.MALFORMED_SETTINGS)], {FR: ["nope"]}),
    Case(
        "settings is a string",
        [(FR, False, ReasonCode.MALFORMED_SETTINGS)],
        {FR: {"added": True, "enabled": True, "settings": "x"}},
    ),
    Case(
        "hooks is a list",
        [(FR, False, ReasonCode.MALFORMED_SETTINGS)],
        {FR: {"added": True, "enabled": True, "settings": {"event-hooks": []}}},
    ),
    Case(
        "hook enabled not a bool",
        [(FR, False, ReasonCode.MALFORMED_SETTINGS)],
        {FR: block({"file-saved": {"enabled": "yes", "content_types": ["image/*"]}})},
    ),
    Case("added not a bool", [(FR, False, ReasonCode.MALFORMED_SETTINGS)], {FR: block(added="yes")}),
    Case(
        "malformed block does not hide the others",
        [(FR, False, ReasonCode.MALFORMED_SETTINGS), (SCENE, True, ReasonCode.RUN)],
        {FR: 7, SCENE: block()},
    ),
    # --- the event hook
    Case("no hook for the event", [(FR, False, ReasonCode.NO_HOOK)], {FR: block({"file-deleted": hook()})}),
    Case("hook disabled", [(FR, False, ReasonCode.HOOK_DISABLED)], {FR: block({"file-saved": hook(enabled=False)})}),
    # --- content types
    Case("exact content type", [(FR, True, ReasonCode.RUN)], {FR: block({"file-saved": hook(types=["image/jpeg"])})}),
    Case("any content type", [(FR, True, ReasonCode.RUN)], {FR: block({"file-saved": hook(types=["*/*"])})}),
    Case(
        "content type with parameters and case",
        [(FR, True, ReasonCode.RUN)],
        {FR: block()},
        asset={"content_type": "Image/JPEG; q=1", "status": "OK"},
    ),
    Case(
        "content type not in hook",
        [(FR, False, ReasonCode.CONTENT_TYPE_NOT_IN_HOOK)],
        {FR: block()},
        asset={"content_type": "video/mp4", "status": "OK"},
    ),
    Case(
        "single content type string",
        [(FR, True, ReasonCode.RUN)],
        {FR: block({"file-saved": hook(types="image/jpeg")})},
    ),
    Case(
        "hook lists no content type",
        [(FR, False, ReasonCode.CONTENT_TYPE_NOT_IN_HOOK)],
        {FR: block({"file-saved": hook(types=[])})},
    ),
    Case(
        "addon does not accept the type",
        [(FR, False, ReasonCode.CONTENT_TYPE_NOT_ACCEPTED)],
        {FR: block({"file-saved": hook(types=["*/*"])})},
        asset={"content_type": "application/pdf", "status": "OK"},
    ),
    Case(
        "video addon on video",
        [(STORY, True, ReasonCode.RUN)],
        {STORY: block({"file-saved": hook(types=["*/*"])})},
        asset={"content_type": "video/mp4", "status": "OK"},
    ),
    Case(
        "video addon on image",
        [(STORY, False, ReasonCode.CONTENT_TYPE_NOT_ACCEPTED)],
        {STORY: block({"file-saved": hook(types=["*/*"])})},
    ),
    Case(
        "document: image addons skip",
        [(FR, False, ReasonCode.CONTENT_TYPE_NOT_IN_HOOK), (NOMARK, True, ReasonCode.RUN)],
        {FR: block(), NOMARK: block({"file-saved": hook(types=["application/pdf"])})},
        asset={"content_type": "application/pdf", "status": "OK"},
    ),
    Case(
        "asset without content type", [(FR, False, ReasonCode.NO_CONTENT_TYPE)], {FR: block()}, asset={"status": "OK"}
    ),
    # --- asset status
    Case("asset status absent", [(FR, True, ReasonCode.RUN)], {FR: block()}, asset={"content_type": "image/png"}),
    Case(
        "asset status ERROR",
        [(FR, False, ReasonCode.ASSET_NOT_PROCESSABLE)],
        {FR: block()},
        asset={"content_type": "image/png", "status": "ERROR"},
    ),
    Case(
        "asset status ARCHIVED",
        [(FR, False, ReasonCode.ASSET_NOT_PROCESSABLE)],
        {FR: block()},
        asset={"content_type": "image/png", "status": "ARCHIVED"},
    ),
    # --- schema criteria (file-data-updated)
    Case("fdu without criteria", [(FR, True, ReasonCode.RUN)], {FR: fdu_block(None)}, FDU, asset=data_asset({})),
    Case("fdu empty criteria", [(FR, True, ReasonCode.RUN)], {FR: fdu_block({})}, FDU, asset=data_asset({})),
    Case("fdu empty fields", [(FR, True, ReasonCode.RUN)], {FR: fdu_block({"fields": {}})}, FDU, asset=data_asset({})),
    Case(
        "fdu schema id int vs str",
        [(FR, True, ReasonCode.RUN)],
        {FR: fdu_block({"data_schema_id": 1})},
        FDU,
        asset=data_asset({}, schema_id="1"),
    ),
    Case(
        "fdu schema id differs",
        [(FR, False, ReasonCode.SCHEMA_ID_MISMATCH)],
        {FR: fdu_block({"data_schema_id": 2})},
        FDU,
        asset=data_asset({}),
    ),
    Case(
        "fdu asset has no schema",
        [(FR, False, ReasonCode.SCHEMA_ID_MISMATCH)],
        {FR: fdu_block({"data_schema_id": 1})},
        FDU,
        asset=data_asset({}, schema_id=None),
    ),
    Case(
        "fdu fields match",
        [(FR, True, ReasonCode.RUN)],
        {FR: fdu_block({"data_schema_id": 1, "fields": {"assetCode": "GM", "originalAsset": "Y"}})},
        FDU,
        asset=data_asset({"assetCode": "GM", "originalAsset": "Y", "other": 1}),
    ),
    Case(
        "fdu one field differs",
        [(FR, False, ReasonCode.SCHEMA_FIELD_MISMATCH)],
        {FR: fdu_block({"fields": {"assetCode": "GM", "originalAsset": "Y"}})},
        FDU,
        asset=data_asset({"assetCode": "GM", "originalAsset": "N"}),
    ),
    Case(
        "fdu field missing",
        [(FR, False, ReasonCode.SCHEMA_FIELD_MISMATCH)],
        {FR: fdu_block({"fields": {"assetCode": "GM"}})},
        FDU,
        asset=data_asset({}),
    ),
    Case(
        "fdu OR matches",
        [(FR, True, ReasonCode.RUN)],
        {FR: fdu_block({"fields": {"c": "GM OR TV"}})},
        FDU,
        asset=data_asset({"c": "TV"}),
    ),
    Case(
        "fdu OR no match",
        [(FR, False, ReasonCode.SCHEMA_FIELD_MISMATCH)],
        {FR: fdu_block({"fields": {"c": "GM OR TV"}})},
        FDU,
        asset=data_asset({"c": "XX"}),
    ),
    Case(
        "fdu AND on a list",
        [(FR, True, ReasonCode.RUN)],
        {FR: fdu_block({"fields": {"tags": "a AND b"}})},
        FDU,
        asset=data_asset({"tags": ["b", "c", "a"]}),
    ),
    Case(
        "fdu AND missing one",
        [(FR, False, ReasonCode.SCHEMA_FIELD_MISMATCH)],
        {FR: fdu_block({"fields": {"tags": "a AND b"}})},
        FDU,
        asset=data_asset({"tags": ["a"]}),
    ),
    Case(
        "fdu wildcard",
        [(FR, True, ReasonCode.RUN)],
        {FR: fdu_block({"fields": {"c": "GM*"}})},
        FDU,
        asset=data_asset({"c": "GM-2024"}),
    ),
    Case(
        "fdu wildcard is a prefix",
        [(FR, False, ReasonCode.SCHEMA_FIELD_MISMATCH)],
        {FR: fdu_block({"fields": {"c": "GM*"}})},
        FDU,
        asset=data_asset({"c": "XGM"}),
    ),
    Case(
        "fdu wildcard in OR",
        [(FR, True, ReasonCode.RUN)],
        {FR: fdu_block({"fields": {"c": "TV OR GM*"}})},
        FDU,
        asset=data_asset({"c": "GMX"}),
    ),
    Case(
        "fdu five terms",
        [(FR, True, ReasonCode.RUN)],
        {FR: fdu_block({"fields": {"c": "a OR b OR c OR d OR e"}})},
        FDU,
        asset=data_asset({"c": "e"}),
    ),
    Case(
        "fdu six terms",
        [(FR, False, ReasonCode.INVALID_CRITERIA)],
        {FR: fdu_block({"fields": {"c": "a OR b OR c OR d OR e OR f"}})},
        FDU,
        asset=data_asset({"c": "a"}),
    ),
    Case(
        "fdu mixed operators",
        [(FR, False, ReasonCode.INVALID_CRITERIA)],
        {FR: fdu_block({"fields": {"c": "a OR b AND c"}})},
        FDU,
        asset=data_asset({"c": "a"}),
    ),
    Case(
        "fdu object value",
        [(FR, False, ReasonCode.INVALID_CRITERIA)],
        {FR: fdu_block({"fields": {"c": {"x": 1}}})},
        FDU,
        asset=data_asset({"c": "a"}),
    ),
    Case(
        "fdu numeric value",
        [(FR, True, ReasonCode.RUN)],
        {FR: fdu_block({"fields": {"n": 3}})},
        FDU,
        asset=data_asset({"n": 3}),
    ),
    Case(
        "criteria ignored on file-saved",
        [(FR, True, ReasonCode.RUN)],
        {FR: block({"file-saved": hook(criteria={"data_schema_id": 99, "fields": {"c": "nope"}})})},
        asset=data_asset({"c": "x"}, schema_id=1),
    ),
    Case("fdu hook absent", [(FR, False, ReasonCode.NO_HOOK)], {FR: block()}, FDU, asset=data_asset({})),
    # --- already processed and force
    Case(
        "already processed",
        [(FR, False, ReasonCode.ALREADY_PROCESSED)],
        {FR: block()},
        asset={**IMAGE, "data": {"_filespin_fr_count": 0}},
    ),
    Case(
        "already processed, forced",
        [(FR, True, ReasonCode.FORCED)],
        {FR: block()},
        force=True,
        asset={**IMAGE, "data": {"_filespin_fr_count": 2}},
    ),
    Case("forced, not processed", [(FR, True, ReasonCode.RUN)], {FR: block()}, force=True),
    Case(
        "null marker is not processed",
        [(FR, True, ReasonCode.RUN)],
        {FR: block()},
        asset={**IMAGE, "data": {"_filespin_fr_count": None}},
    ),
    Case(
        "another addon's marker",
        [(SCENE, True, ReasonCode.RUN)],
        {SCENE: block()},
        asset={**IMAGE, "data": {"_filespin_fr_count": 1}},
    ),
    Case(
        "registry marker",
        [(EMOTION, False, ReasonCode.ALREADY_PROCESSED)],
        {EMOTION: block()},
        asset={**IMAGE, "data": {"emotion_done": True}},
    ),
    Case(
        "force does not bypass a disabled hook",
        [(FR, False, ReasonCode.HOOK_DISABLED)],
        {FR: block({"file-saved": hook(enabled=False)})},
        force=True,
    ),
    Case(
        "force does not bypass content types",
        [(FR, False, ReasonCode.CONTENT_TYPE_NOT_IN_HOOK)],
        {FR: block()},
        force=True,
        asset={"content_type": "video/mp4"},
    ),
    # --- file-deleted
    Case(
        "deleted: face data delete",
        [(FR, True, ReasonCode.DELETE)],
        {FR: block({"file-deleted": hook()})},
        "file-deleted",
    ),
    Case(
        "deleted: no delete action",
        [(SCENE, False, ReasonCode.NO_DELETE_ACTION)],
        {SCENE: block({"file-deleted": hook()})},
        "file-deleted",
    ),
    Case(
        "deleted: hook disabled",
        [(FR, False, ReasonCode.HOOK_DISABLED)],
        {FR: block({"file-deleted": hook(enabled=False)})},
        "file-deleted",
    ),
    Case("deleted: no hook", [(FR, False, ReasonCode.NO_HOOK)], {FR: block()}, "file-deleted"),
    Case(
        "deleted: processed does not matter",
        [(FR, True, ReasonCode.DELETE)],
        {FR: block({"file-deleted": hook()})},
        "file-deleted",
        asset={**IMAGE, "data": {"_filespin_fr_count": 3}},
    ),
    Case(
        "deleted: status does not matter",
        [(FR, True, ReasonCode.DELETE)],
        {FR: block({"file-deleted": hook()})},
        "file-deleted",
        asset={"content_type": "image/png", "status": "ARCHIVED"},
    ),
    Case(
        "deleted: no content type, delete anyway",
        [(FR, True, ReasonCode.DELETE)],
        {FR: block({"file-deleted": hook()})},
        "file-deleted",
        asset={"status": "OK"},
    ),
    Case(
        "deleted: other content type",
        [(FR, False, ReasonCode.CONTENT_TYPE_NOT_IN_HOOK)],
        {FR: block({"file-deleted": hook()})},
        "file-deleted",
        asset={"content_type": "video/mp4"},
    ),
    # --- the other event types
    Case(
        "file-processed hook", [(FR, True, ReasonCode.RUN)], {FR: block({"file-processed": hook()})}, "file-processed"
    ),
    Case("file-processed without hook", [(FR, False, ReasonCode.NO_HOOK)], {FR: block()}, "file-processed"),
    Case(
        "file-undeleted hook", [(FR, True, ReasonCode.RUN)], {FR: block({"file-undeleted": hook()})}, "file-undeleted"
    ),
    Case(
        "file-undeleted keeps already processed",
        [(FR, False, ReasonCode.ALREADY_PROCESSED)],
        {FR: block({"file-undeleted": hook()})},
        "file-undeleted",
        asset={**IMAGE, "data": {"_filespin_fr_count": 1}},
    ),
    Case(
        "addon-processed hook",
        [(FR, True, ReasonCode.RUN)],
        {FR: block({"addon-processed": hook()})},
        "addon-processed",
    ),
    Case(
        "addon-processed loop guard",
        [(NOMARK, False, ReasonCode.LOOP_GUARD)],
        {NOMARK: block({"addon-processed": hook()})},
        "addon-processed",
    ),
    Case(
        "addon-processed loop guard, forced",
        [(NOMARK, True, ReasonCode.RUN)],
        {NOMARK: block({"addon-processed": hook()})},
        "addon-processed",
        force=True,
    ),
]


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_planning_rules(case: Case) -> None:
    decisions = run_case(case)
    assert [(d.addon, d.run, d.reason_code) for d in decisions] == case.expected
    for d in decisions:
        assert d.reason.strip()
        assert d.action is (Action.DELETE if case.event_type == "file-deleted" else Action.PROCESS)


def test_every_reason_code_is_covered_by_a_row() -> None:
    covered = {code for case in CASES for _, _, code in case.expected}
    assert covered == set(ReasonCode)


def test_run_decision_carries_the_users_disposition() -> None:
    disposition = {"update_metadata": False, "confidence_threshold": 0.7, "pass_through_fields": ["a"]}
    case = Case("d", [], {FR: block(disposition=disposition), SCENE: block(added=False)})
    decisions = run_case(case)
    assert [d.disposition for d in decisions] == [disposition]
    assert decisions[0].to_dict()["reason_code"] == "run"


def test_disposition_inside_the_hooks_block() -> None:
    raw = {"added": True, "enabled": True, "settings": {"event-hooks": {"file-saved": hook(), "disposition": {"x": 1}}}}
    (decision,) = run_case(Case("d", [], {FR: raw}))
    assert decision.run
    assert decision.disposition == {"x": 1}


def test_reasons_name_the_cause() -> None:
    (decision,) = run_case(Case("r", [], {FR: block()}, asset={**IMAGE, "data": {"_filespin_fr_count": 0}}))
    assert "_filespin_fr_count" in decision.reason
    (decision,) = run_case(Case("r", [], {FR: block()}, asset={"content_type": "video/mp4"}))
    assert "video/mp4" in decision.reason


# ---------------------------------------------------------------------------------------------- properties

ADDON_KEYS = [FR, SCENE, EMOTION, STORY, NOMARK, "UNKNOWN_ONE"]
EVENT_TYPES = [e.value for e in EventType]
CONTENT_TYPES = ["image/jpeg", "image/png", "IMAGE/GIF; x=1", "video/mp4", "application/pdf", "text/plain", None]
PATTERNS = ["image/*", "image/jpeg", "video/*", "*/*", "application/pdf", "Image/PNG"]
MARKERS = [
    "_filespin_fr_count",
    "_filespin_scene_labels",
    "_filespin_emotion_labels",
    "_filespin_storyboard",
    "emotion_done",
]
FIELD_VALUES = ["GM", "TV", "GM OR TV", "G*", "a AND b", "a OR b AND c", "1 OR 2 OR 3 OR 4 OR 5 OR 6", "*"]

criteria_st = st.one_of(
    st.none(),
    st.none(),
    st.fixed_dictionaries(
        {},
        optional={
            "data_schema_id": st.sampled_from([1, "1", 2, "x"]),
            "fields": st.dictionaries(st.sampled_from(["c", "d"]), st.sampled_from(FIELD_VALUES), max_size=2),
        },
    ),
)
mostly_true = st.sampled_from([True, True, True, False])
hook_st = st.builds(
    lambda enabled, types, criteria: hook(enabled, types, criteria),
    mostly_true,
    st.lists(st.sampled_from(PATTERNS), min_size=1, max_size=3),
    criteria_st,
)
bad_block_st = st.sampled_from(
    [
        [],
        "x",
        {"added": True, "enabled": True, "settings": []},
        {"added": "yes", "enabled": True},
        {"added": True, "enabled": True, "settings": {"event-hooks": {"file-saved": {"enabled": "on"}}}},
    ]
)


def often(usual: st.SearchStrategy[Any], rare: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """``usual`` nine times in ten, else ``rare`` (``one_of`` would draw them evenly)."""
    return st.sampled_from([True] * 9 + [False]).flatmap(lambda pick: usual if pick else rare)


@functools.cache
def block_st(event_type: str) -> st.SearchStrategy[Any]:
    """An addon block, usually well-formed, added, enabled and with a hook for ``event_type``."""
    hooks = st.builds(
        lambda own, others: {**others, **own},
        often(st.builds(lambda h: {event_type: h}, hook_st), st.just({})),
        st.dictionaries(st.sampled_from(EVENT_TYPES), hook_st, max_size=2),
    )
    good = st.builds(
        lambda h, added, enabled, spelling, n: block(
            h, added=added, enabled=enabled, spelling=spelling, disposition={"n": n}
        ),
        hooks,
        mostly_true,
        mostly_true,
        st.sampled_from(["event-hooks", "event_hooks"]),
        st.integers(0, 3),
    )
    return often(good, bad_block_st)


asset_st = st.fixed_dictionaries(
    {
        "content_type": st.sampled_from([*CONTENT_TYPES, "image/jpeg", "image/png"]),
        "status": st.sampled_from([None, "OK", "OK", "OK", "OK", "OK", "ERROR", "ARCHIVED"]),
        "data_schema_id": st.sampled_from([None, 1, "1", 2]),
        "data": st.dictionaries(
            st.sampled_from([*MARKERS, "c", "d"]),
            st.one_of(
                st.sampled_from(["GM", "TV", "a", "b", "GMX"]),
                st.integers(0, 2),
                st.none(),
                st.lists(st.sampled_from(["a", "b", "c"]), max_size=3),
            ),
            max_size=4,
        ),
    }
)


@st.composite
def scenario(draw: st.DrawFn) -> tuple[AssetEvent, AssetData, UserSettings]:
    raw_asset = draw(asset_st)
    event_type = draw(st.sampled_from([*EVENT_TYPES, "file-saved", "file-data-updated", "file-deleted"]))
    users = draw(st.dictionaries(st.sampled_from([FR, FR, SCENE, *ADDON_KEYS]), block_st(event_type), max_size=4))
    listed = draw(st.one_of(st.just([]), st.lists(st.sampled_from(ADDON_KEYS), max_size=4)))
    event = make_event(event_type, listed, draw(st.booleans()), raw_asset)
    return event, AssetData.from_api(raw_asset), UserSettings(addons=users)


PROPS = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def run_set(decisions: list[Decision]) -> set[str]:
    return {d.addon for d in decisions if d.run}


REACHED = [ReasonCode.RUN, ReasonCode.FORCED, ReasonCode.DELETE, ReasonCode.ALREADY_PROCESSED, ReasonCode.HOOK_DISABLED]


@pytest.mark.parametrize("code", REACHED, ids=[c.value for c in REACHED])
def test_the_generator_reaches_runs_and_skips(code: ReasonCode) -> None:
    # The properties below are only as good as their inputs: runs of each kind (and the skips that force or
    # a disabled hook are about) must be drawn, not just malformed settings.

    def reaches(s: tuple[AssetEvent, AssetData, UserSettings]) -> bool:
        return any(d.reason_code is code for d in plan(*s, REGISTRY))

    found = find(
        scenario(),
        reaches,
        settings=settings(max_examples=5000, deadline=None, database=None, phases=[Phase.generate]),
    )
    event, asset, users = found
    assert any(d.reason_code is code for d in plan(event, asset, users, REGISTRY))


@PROPS
@given(scenario())
def test_one_decision_per_candidate_and_deterministic(s: tuple[AssetEvent, AssetData, UserSettings]) -> None:
    event, asset, users = s
    decisions = plan(event, asset, users, REGISTRY)
    assert [d.addon for d in decisions] == candidates(event, users)
    assert len({d.addon for d in decisions}) == len(decisions)
    assert plan(event, asset, users, REGISTRY) == decisions
    if event.addons:
        assert [d.addon for d in decisions] == list(dict.fromkeys(event.addons))


@PROPS
@given(scenario())
def test_every_decision_has_a_reason_and_a_consistent_code(s: tuple[AssetEvent, AssetData, UserSettings]) -> None:
    for d in plan(*s, REGISTRY):
        assert d.reason.strip()
        assert isinstance(d.reason_code, ReasonCode)
        assert d.run == (d.reason_code in RUN_CODES)
        if not d.run:
            assert d.disposition == {}


@PROPS
@given(scenario())
def test_force_never_reduces_the_run_set(s: tuple[AssetEvent, AssetData, UserSettings]) -> None:
    event, asset, users = s
    unforced = event.model_copy(update={"force_processing": False})
    forced = event.model_copy(update={"force_processing": True})
    assert run_set(plan(unforced, asset, users, REGISTRY)) <= run_set(plan(forced, asset, users, REGISTRY))


@PROPS
@given(scenario())
def test_a_run_satisfies_every_condition(s: tuple[AssetEvent, AssetData, UserSettings]) -> None:
    event, asset, users = s
    for d in plan(event, asset, users, REGISTRY):
        if not d.run:
            continue
        spec = REGISTRY[d.addon]  # only known addons run
        addon = AddonSettings.from_api(users.addons[d.addon])  # only well-formed blocks run
        assert addon.added
        assert addon.enabled
        the_hook = addon.hooks[event.event_type.value]
        assert the_hook.enabled  # a disabled hook never runs
        assert d.disposition == addon.disposition
        if event.event_type is EventType.FILE_DELETED:
            assert d.action is Action.DELETE
            assert spec.delete is not None
            continue
        assert d.action is Action.PROCESS
        assert asset.status in (None, "OK")
        assert content_type_matches_any(asset.content_type, the_hook.content_types)
        assert content_type_matches_any(asset.content_type, spec.accepts)
        if not event.force_processing:
            assert not any(asset.data.get(f) is not None for f in spec.processed_fields)


@PROPS
@given(scenario())
def test_force_changes_only_the_already_processed_verdicts(s: tuple[AssetEvent, AssetData, UserSettings]) -> None:
    event, asset, users = s
    unforced = plan(event.model_copy(update={"force_processing": False}), asset, users, REGISTRY)
    forced = plan(event.model_copy(update={"force_processing": True}), asset, users, REGISTRY)
    for before, after in zip(unforced, forced, strict=True):
        if before.reason_code != after.reason_code:
            assert before.reason_code in (ReasonCode.ALREADY_PROCESSED, ReasonCode.LOOP_GUARD, ReasonCode.RUN)
            assert after.run
