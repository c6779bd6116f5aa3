"""The addon call a trigger job asks for: URL, body and a label, built from the job and the addon registry."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from asset_post_process.common.contract import Action, TriggerJob
from asset_post_process.common.registry import AddonRegistry


class PermanentJobError(Exception):
    """The job can never succeed as it is (unknown addon, no delete action, ...): dead-letter it."""

    def __init__(self, reason_code: str, reason: str) -> None:
        super().__init__(reason)
        self.reason_code = reason_code
        self.reason = reason


@dataclass(frozen=True)
class AddonRequest:
    """One addon call: ``POST url`` with ``body`` (``ids`` set for a delete call)."""

    addon: str
    action: Action
    url: str
    body: dict[str, Any] = field(default_factory=dict)
    ids: tuple[str, ...] = ()

    @property
    def what(self) -> str:
        """A label for errors and logs (never holds the key)."""
        return f"{self.addon} {self.action.value}"


def build_request(job: TriggerJob, registry: AddonRegistry) -> AddonRequest:
    """The call ``job`` asks for; :class:`PermanentJobError` when the registry cannot serve it."""
    spec = registry.get(job.addon)
    if spec is None:
        raise PermanentJobError("unknown_addon", f"addon {job.addon} is not in the addon registry")
    base_url = registry.base_url(job.addon)
    if job.action is Action.DELETE:
        if spec.delete is None:
            raise PermanentJobError("no_delete_action", f"addon {job.addon} has no delete action")
        return AddonRequest(
            addon=job.addon,
            action=job.action,
            url=f"{base_url}{spec.delete.path}",
            body={"ids": [job.asset_id]},
            ids=(job.asset_id,),
        )
    return AddonRequest(
        addon=job.addon,
        action=job.action,
        url=f"{base_url}{spec.process_path(job.asset_id)}",
        body={"disposition": job.disposition},
    )
