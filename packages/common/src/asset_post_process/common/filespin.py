"""The FileSpin API client: user settings, asset data, addon calls and face-data deletion.

One pooled ``httpx.Client`` per process with explicit timeouts. Every failure is raised as a
:class:`FileSpinError` that says whether it is transient (retry later) or permanent (do not retry), with
the status and a redacted excerpt of the answer, never the key.
"""

from __future__ import annotations

import email.utils
import time
from dataclasses import dataclass
from typing import Any

import httpx

from asset_post_process.common.__about__ import __version__
from asset_post_process.common.crypto import PlainApiKey
from asset_post_process.common.filespin_models import AssetData, UserSettings
from asset_post_process.common.redaction import safe_excerpt

API_KEY_HEADER = "X-FileSpin-Api-Key"
INTERNAL_HEADER = "X-FileSpin-Internal-Request"

#: Statuses worth retrying: the server may answer differently later.
TRANSIENT_STATUSES = frozenset({408, 425, 429, 500, 502, 503, 504})


class FileSpinError(Exception):
    """A FileSpin call failed. ``transient`` says whether retrying later can help."""

    def __init__(
        self,
        reason: str,
        *,
        transient: bool,
        status_code: int | None = None,
        retry_after: float | None = None,
        code: str | None = None,
    ) -> None:
        super().__init__(reason)
        self.reason = reason
        self.transient = transient
        self.status_code = status_code
        self.retry_after = retry_after
        self.code = code or (f"http_{status_code}" if status_code else "transport_error")


def is_transient_status(status_code: int) -> bool:
    """Whether an HTTP status is worth retrying (429, 408, 425 and 5xx)."""
    return status_code in TRANSIENT_STATUSES or status_code >= 500


def parse_retry_after(value: str | None, now: float | None = None) -> float | None:
    """Seconds to wait from a ``Retry-After`` header (delta-seconds or HTTP date); ``None`` if absent/invalid."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - (time.time() if now is None else now))


def error_from_response(response: httpx.Response, what: str) -> FileSpinError:
    """The :class:`FileSpinError` for a non-2xx ``response`` to ``what`` (e.g. "user settings")."""
    status = response.status_code
    excerpt = safe_excerpt(response.text) if response.content else ""
    reason = f"{what}: HTTP {status}" + (f" ({excerpt})" if excerpt else "")
    return FileSpinError(
        reason,
        transient=is_transient_status(status),
        status_code=status,
        retry_after=parse_retry_after(response.headers.get("Retry-After")),
    )


@dataclass(frozen=True)
class AddonCallResult:
    """A successful addon call: 2xx (maybe async with a ``job_id``) or 409 (already processed)."""

    status_code: int
    job_id: str | None
    already_processed: bool
    elapsed_seconds: float


class FileSpinClient:
    """Calls the FileSpin API (and addon hosts) on behalf of a user whose key is given per call."""

    def __init__(
        self,
        base_url: str,
        *,
        connect_timeout: float = 3.0,
        read_timeout: float = 30.0,
        max_connections: int = 100,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self._http = httpx.Client(
            timeout=httpx.Timeout(read_timeout, connect=connect_timeout),
            limits=httpx.Limits(max_connections=max_connections, max_keepalive_connections=max_connections),
            headers={INTERNAL_HEADER: "true", "User-Agent": f"asset-post-process/{__version__}"},
            transport=transport,
            follow_redirects=False,
        )

    def close(self) -> None:
        """Close the connection pool."""
        self._http.close()

    def _request(
        self, method: str, url: str, apikey: PlainApiKey, what: str, json: Any = None
    ) -> tuple[httpx.Response, float]:
        started = time.perf_counter()
        try:
            response = self._http.request(method, url, headers={API_KEY_HEADER: apikey.reveal()}, json=json)
        except httpx.TimeoutException as exc:
            raise FileSpinError(f"{what}: timed out ({type(exc).__name__})", transient=True, code="timeout") from None
        except httpx.TransportError as exc:
            raise FileSpinError(
                f"{what}: connection failed ({type(exc).__name__})", transient=True, code="connection_error"
            ) from None
        return response, time.perf_counter() - started

    def _json(self, response: httpx.Response, what: str) -> Any:
        try:
            return response.json()
        except ValueError:
            raise FileSpinError(
                f"{what}: answer is not JSON ({safe_excerpt(response.text, 80)})",
                transient=True,
                status_code=response.status_code,
                code="bad_answer",
            ) from None

    def get_user_settings_payload(self, apikey: PlainApiKey) -> dict[str, Any]:
        """The raw ``GET /api/v1/user/settings`` answer (for caching); raises :class:`FileSpinError`."""
        what = "user settings"
        response, _ = self._request("GET", f"{self.base_url}/api/v1/user/settings", apikey, what)
        if response.status_code != 200:
            raise error_from_response(response, what)
        payload = self._json(response, what)
        if not isinstance(payload, dict):
            raise FileSpinError(f"{what}: answer is not an object", transient=False, code="bad_answer")
        return payload

    def get_user_settings(self, apikey: PlainApiKey) -> UserSettings:
        """The user's settings, parsed."""
        return parse_user_settings(self.get_user_settings_payload(apikey))

    def get_asset_data(self, apikey: PlainApiKey, asset_id: str) -> AssetData:
        """``GET /api/v1/assets/{asset_id}/data``; raises :class:`FileSpinError` (404 is permanent)."""
        what = f"asset {asset_id} data"
        response, _ = self._request("GET", f"{self.base_url}/api/v1/assets/{asset_id}/data", apikey, what)
        if response.status_code != 200:
            raise error_from_response(response, what)
        try:
            return AssetData.from_api(self._json(response, what))
        except ValueError as exc:
            raise FileSpinError(f"{what}: {exc}", transient=False, code="bad_answer") from None

    def post_addon(self, apikey: PlainApiKey, url: str, body: dict[str, Any], what: str) -> AddonCallResult:
        """POST ``body`` to an addon ``url``; 2xx and 409 succeed, anything else raises :class:`FileSpinError`."""
        response, elapsed = self._request("POST", url, apikey, what, json=body)
        if response.status_code == 409:
            return AddonCallResult(409, None, already_processed=True, elapsed_seconds=elapsed)
        if not 200 <= response.status_code < 300:
            raise error_from_response(response, what)
        job_id: str | None = None
        if response.content:
            try:
                answer = response.json()
            except ValueError:
                answer = None
            if isinstance(answer, dict) and answer.get("job_id") is not None:
                job_id = str(answer["job_id"])
        return AddonCallResult(response.status_code, job_id, already_processed=False, elapsed_seconds=elapsed)

    def delete_addon_data(self, apikey: PlainApiKey, url: str, ids: list[str], what: str) -> AddonCallResult:
        """Ask an addon to delete its data for ``ids`` (face data delete: ``{"ids": [...]}``, at most 100)."""
        if not 1 <= len(ids) <= 100:
            raise ValueError("between 1 and 100 ids per delete call")
        return self.post_addon(apikey, url, {"ids": ids}, what)


def parse_user_settings(payload: dict[str, Any]) -> UserSettings:
    """Parse a settings answer; a malformed one is a permanent :class:`FileSpinError`."""
    try:
        return UserSettings.from_api(payload)
    except ValueError as exc:
        raise FileSpinError(f"user settings: {exc}", transient=False, code="bad_answer") from None
