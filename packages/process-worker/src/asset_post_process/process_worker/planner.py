"""The planning rules: for one asset event, which addons run, with which action, and why (a pure function).

:func:`plan` implements FileSpin's documented conditions ("When an addon runs" in the FileSpin reference) and
returns one :class:`Decision` per candidate addon, in candidate order. It does no I/O and reads no clock, so the
same inputs always give the same decisions.

Checks, in order (the first that fails is the reason given):

1. the registry knows the addon (``unknown_addon``);
2. the user's settings hold a well-formed block for it (``addon_not_in_settings``, ``malformed_addon_settings``);
3. the addon is ``added`` and ``enabled`` (``addon_not_added``, ``addon_not_enabled``);
4. a hook named after the event type exists and is enabled (``no_event_hook``, ``event_hook_disabled``);
5. ``file-deleted`` only: the registry has a delete action (``no_delete_action``); the content-type checks
   below apply when the deleted asset's data still names its type; nothing else applies, the action is ``delete``;
6. any other event: the asset's status is ``OK`` (or absent) (``asset_not_processable``);
7. the asset's content type matches the hook's ``content_types`` and the registry's ``accepts``
   (``no_content_type``, ``content_type_not_in_hook``, ``content_type_not_accepted``);
8. ``file-data-updated`` only: the hook's ``schema_criteria`` (``schema_id_mismatch``, ``schema_field_mismatch``,
   ``invalid_schema_criteria``);
9. ``addon-processed`` only, unless forced: the addon has an "already processed" field, so that running it on
   its own completion event cannot loop (``loop_guard``);
10. unless ``force_processing``: the asset's custom data holds none of the addon's processed fields
    (``already_processed``; a forced re-run says ``forced``).

``file-saved``, ``file-processed``, ``file-undeleted`` and ``addon-processed`` all take the ``process`` path: a hook
named after the event is honoured like any other, and "already processed" still applies (an undeleted asset that
kept its addon output is not processed again unless forced).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from enum import StrEnum
from typing import Any

from asset_post_process.common.contract import Action, AssetEvent, EventType
from asset_post_process.common.filespin_models import AddonSettings, AssetData, UserSettings
from asset_post_process.common.registry import AddonSpec
from asset_post_process.process_worker.matching import check_criteria, content_type_matches_any


class ReasonCode(StrEnum):
    """Machine-readable reason of a decision (the human text is in :attr:`Decision.reason`)."""

    RUN = "run"
    FORCED = "forced"
    DELETE = "delete"
    UNKNOWN_ADDON = "unknown_addon"
    NOT_IN_SETTINGS = "addon_not_in_settings"
    MALFORMED_SETTINGS = "malformed_addon_settings"
    NOT_ADDED = "addon_not_added"
    NOT_ENABLED = "addon_not_enabled"
    NO_HOOK = "no_event_hook"
    HOOK_DISABLED = "event_hook_disabled"
    NO_DELETE_ACTION = "no_delete_action"
    ASSET_NOT_PROCESSABLE = "asset_not_processable"
    NO_CONTENT_TYPE = "no_content_type"
    CONTENT_TYPE_NOT_IN_HOOK = "content_type_not_in_hook"
    CONTENT_TYPE_NOT_ACCEPTED = "content_type_not_accepted"
    SCHEMA_ID_MISMATCH = "schema_id_mismatch"
    SCHEMA_FIELD_MISMATCH = "schema_field_mismatch"
    INVALID_CRITERIA = "invalid_schema_criteria"
    LOOP_GUARD = "loop_guard"
    ALREADY_PROCESSED = "already_processed"


_CRITERIA_CODES = {
    "schema_id": ReasonCode.SCHEMA_ID_MISMATCH,
    "field": ReasonCode.SCHEMA_FIELD_MISMATCH,
    "invalid": ReasonCode.INVALID_CRITERIA,
}

#: Asset statuses under which an addon can process the file (``None``: the backend did not say).
PROCESSABLE_STATUSES = frozenset({None, "OK"})


@dataclass(frozen=True)
class Decision:
    """Whether one addon runs for one event: ``run`` with ``action`` and ``disposition``, or a skip; and why."""

    addon: str
    run: bool
    action: Action
    reason: str
    reason_code: ReasonCode
    disposition: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        data = asdict(self)
        data["action"] = self.action.value
        data["reason_code"] = self.reason_code.value
        return data


def candidates(event: AssetEvent, user_settings: UserSettings) -> list[str]:
    """The addons to decide on: the message's ``addons`` (deduplicated, in order), else every addon the user has
    ``added`` and ``enabled``; a block that is not well-formed enough to tell is a candidate too, so that the
    decision log shows it as malformed instead of hiding it."""
    if event.addons:
        return list(dict.fromkeys(event.addons))
    chosen = []
    for key, raw in user_settings.addons.items():
        if not isinstance(raw, dict):
            chosen.append(key)
            continue
        added, enabled = raw.get("added", False), raw.get("enabled", False)
        if not (isinstance(added, bool) and isinstance(enabled, bool)) or (added and enabled):
            chosen.append(key)
    return chosen


def processed_field(spec: AddonSpec, asset: AssetData) -> str | None:
    """The first of the addon's "already processed" fields present (not null) in the asset's custom data."""
    return next((name for name in spec.processed_fields if asset.data.get(name) is not None), None)


def _skip(addon: str, action: Action, code: ReasonCode, reason: str) -> Decision:
    return Decision(addon=addon, run=False, action=action, reason=reason, reason_code=code)


def decide(
    addon: str, event: AssetEvent, asset: AssetData, user_settings: UserSettings, registry: Mapping[str, AddonSpec]
) -> Decision:
    """The decision for one candidate ``addon`` (see the module docstring for the order of checks)."""
    event_type = event.event_type
    action = Action.DELETE if event_type is EventType.FILE_DELETED else Action.PROCESS
    spec = registry.get(addon)
    if spec is None:
        return _skip(addon, action, ReasonCode.UNKNOWN_ADDON, f"addon {addon} is not in the addon registry")
    if addon not in user_settings.addons:
        return _skip(addon, action, ReasonCode.NOT_IN_SETTINGS, f"the user's settings have no {addon} block")
    try:
        settings = AddonSettings.from_api(user_settings.addons[addon])
    except ValueError as exc:
        return _skip(addon, action, ReasonCode.MALFORMED_SETTINGS, f"the user's {addon} settings: {exc}")
    if not settings.added:
        return _skip(addon, action, ReasonCode.NOT_ADDED, f"{addon} is not added to the user's account")
    if not settings.enabled:
        return _skip(addon, action, ReasonCode.NOT_ENABLED, f"{addon} is added but not enabled")
    hook = settings.hooks.get(event_type.value)
    if hook is None:
        return _skip(addon, action, ReasonCode.NO_HOOK, f"{addon} has no {event_type.value} event hook")
    if not hook.enabled:
        return _skip(addon, action, ReasonCode.HOOK_DISABLED, f"{addon}'s {event_type.value} hook is disabled")

    def run(code: ReasonCode, reason: str) -> Decision:
        return Decision(addon, True, action, reason, code, dict(settings.disposition))

    content_type = asset.content_type
    if action is Action.DELETE:
        if spec.delete is None:
            return _skip(addon, action, ReasonCode.NO_DELETE_ACTION, f"{addon} has no delete action")
        if content_type:  # a purged asset's data may no longer name its type: delete anyway then
            mismatch = _content_type_mismatch(addon, content_type, hook.content_types, spec)
            if mismatch is not None:
                return _skip(addon, action, *mismatch)
        return run(ReasonCode.DELETE, f"the asset was deleted and {addon}'s file-deleted hook is enabled")

    if asset.status not in PROCESSABLE_STATUSES:
        return _skip(addon, action, ReasonCode.ASSET_NOT_PROCESSABLE, f"the asset's status is {asset.status}")
    if not content_type:
        return _skip(addon, action, ReasonCode.NO_CONTENT_TYPE, "the asset has no content_type")
    mismatch = _content_type_mismatch(addon, content_type, hook.content_types, spec)
    if mismatch is not None:
        return _skip(addon, action, *mismatch)
    if event_type is EventType.FILE_DATA_UPDATED:
        verdict = check_criteria(hook.schema_criteria, asset.data_schema_id, asset.data)
        if not verdict.matched:
            return _skip(addon, action, _CRITERIA_CODES[verdict.code], verdict.reason)
    marker = processed_field(spec, asset)
    if event.force_processing:
        if marker is not None:
            return run(ReasonCode.FORCED, f"already processed ({marker} is set) but force_processing is true")
        return run(ReasonCode.RUN, f"every condition of {addon}'s {event_type.value} hook is met (forced)")
    if event_type is EventType.ADDON_PROCESSED and not spec.processed_fields:
        return _skip(
            addon,
            action,
            ReasonCode.LOOP_GUARD,
            f"{addon} has no 'already processed' field: running it on addon-processed could loop",
        )
    if marker is not None:
        return _skip(addon, action, ReasonCode.ALREADY_PROCESSED, f"already processed: the asset's {marker} is set")
    return run(ReasonCode.RUN, f"every condition of {addon}'s {event_type.value} hook is met")


def _content_type_mismatch(
    addon: str, content_type: str, hook_types: list[str], spec: AddonSpec
) -> tuple[ReasonCode, str] | None:
    if not content_type_matches_any(content_type, hook_types):
        return ReasonCode.CONTENT_TYPE_NOT_IN_HOOK, f"{content_type} is not among the hook's content types {hook_types}"
    if not content_type_matches_any(content_type, spec.accepts):
        return ReasonCode.CONTENT_TYPE_NOT_ACCEPTED, f"{addon} does not accept {content_type} ({list(spec.accepts)})"
    return None


def plan(
    event: AssetEvent, asset: AssetData, user_settings: UserSettings, registry: Mapping[str, AddonSpec]
) -> list[Decision]:
    """One :class:`Decision` per candidate addon of ``event``, in candidate order."""
    return [decide(addon, event, asset, user_settings, registry) for addon in candidates(event, user_settings)]
