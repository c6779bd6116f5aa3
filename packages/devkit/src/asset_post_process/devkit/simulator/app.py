"""The FileSpin simulator as an ASGI app: the FileSpin API of ``reference/filespin-api.md`` plus a control plane.

FileSpin API (authenticated by ``X-FileSpin-Api-Key``: 401 for an unknown key, 404 for an asset that key's user
does not own):

- ``GET  /api/v1/user/settings``                         -> ``{"status": "OK", "data": <the user's settings>}``
- ``GET  /api/v1/assets/{id}/data``                      -> the asset JSON
- ``POST /api/v1/assets/{id}/addons/{name}``             -> 200 ``{"status": "OK"}``, or 202 ``{"job_id": ...}``
- ``POST /api/v1/assets/addons/face_recognition/delete`` body ``{"ids": [...]}`` (1 to 100) -> 202

Control plane under ``/_sim/`` (see :class:`~asset_post_process.devkit.simulator.client.SimulatorClient`).
Every request is async and latency is an ``asyncio.sleep``, so hundreds of slow calls are served at once.
Nothing here logs a request header: the API key never reaches a log.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import time
import uuid
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from asset_post_process.devkit.simulator.models import (
    ADDON_PREFIX,
    ASSET_DATA,
    FACE_DELETE,
    SETTINGS,
    Step,
    addon_endpoint,
    addon_name,
)
from asset_post_process.devkit.simulator.state import ANY, AddonDefault, SimulatorState

log = logging.getLogger(__name__)

API_KEY_HEADER = "x-filespin-api-key"
MAX_DELETE_IDS = 100

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

_SETTINGS_PATH = re.compile(r"^/api/v1/user/settings/?$")
_DATA_PATH = re.compile(r"^/api/v1/assets/(?P<asset_id>[^/]+)/data/?$")
_FACE_DELETE_PATH = re.compile(r"^/api/v1/assets/addons/face_recognition/delete/?$")
_ADDON_PATH = re.compile(r"^/api/v1/assets/(?P<asset_id>[^/]+)/addons/(?P<addon>[A-Za-z0-9_-]+)/?$")


class DropConnection(Exception):
    """Raised after a partial answer so the server closes the connection (a "close" step)."""


class _QuietDrop(logging.Filter):
    """Keeps the server's traceback for a deliberate :class:`DropConnection` out of the logs."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not (record.exc_info and isinstance(record.exc_info[1], DropConnection))


logging.getLogger("uvicorn.error").addFilter(_QuietDrop())


def _error(status: int, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"status": "ERROR", "error": message}, status_code=status, headers=headers)


def _answer(status: int, body: Any, headers: dict[str, str] | None = None) -> Response:
    if body is None:
        return Response(status_code=status, headers=headers)
    return JSONResponse(body, status_code=status, headers=headers)


class SimulatorApp:
    """The ASGI callable; ``state`` is public so an in-process test may also look at it."""

    def __init__(self, state: SimulatorState | None = None) -> None:
        self.state = state or SimulatorState()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await _lifespan(receive, send)
            return
        if scope["type"] != "http":
            return
        request = Request(scope, receive)
        path = request.url.path
        response = (
            await self._control(request, path)
            if path.startswith("/_sim/")
            else await self._api(request, path, scope, send)
        )
        if response is not None:
            await response(scope, receive, send)

    # ------------------------------------------------------------------ the FileSpin API
    async def _api(self, request: Request, path: str, scope: Scope, send: Send) -> Response | None:
        method = request.method
        route = _route(method, path)
        if route is None:
            return _error(404, "not found")
        endpoint, asset_id, allowed = route
        if method != allowed:
            return _error(405, "method not allowed")
        raw = await request.body()
        body: Any = None
        body_ok = True
        if raw:
            try:
                body = json.loads(raw)
            except ValueError:
                body_ok = False
                body = raw.decode(errors="replace")[:1000]
        headers = {name.lower(): value for name, value in request.headers.items()}
        state = self.state
        call = state.record(method=method, path=path, endpoint=endpoint, asset_id=asset_id, headers=headers, body=body)
        scopes = _scopes(endpoint, asset_id, headers.get(API_KEY_HEADER), body)
        step = state.next_step(endpoint, scopes)
        source = "scripted"
        if step is None and endpoint.startswith(ADDON_PREFIX):
            step = _down_step(state, endpoint.removeprefix(ADDON_PREFIX))
            source = "down"
        latency = step.latency if step is not None and step.latency else self._default_latency(endpoint)

        if step is not None and step.action == "hang":
            await self._hang(endpoint, step)
            return self._finish(call, _error(504, "gateway timeout"), "hung")
        if latency > 0:
            await asyncio.sleep(latency)
        if step is not None and step.action == "close":
            call["outcome"] = "closed"
            await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"1000")]})
            raise DropConnection("connection dropped on purpose")
        if step is not None and not 200 <= step.status < 300:
            response = (
                _answer(step.status, step.body, step.headers)
                if step.body is not None
                else _error(step.status, f"simulated HTTP {step.status}", step.headers)
            )
            return self._finish(call, response, source)

        apikey = headers.get(API_KEY_HEADER)
        if not apikey or apikey not in state.users:
            return self._finish(call, _error(401, "invalid or missing API key"), "answered")
        if not body_ok:
            return self._finish(call, _error(400, "body is not JSON"), "answered")
        response = self._serve(endpoint, asset_id, apikey, body, step)
        return self._finish(call, response, "scripted" if step is not None else "answered")

    def _serve(self, endpoint: str, asset_id: str | None, apikey: str, body: Any, step: Step | None) -> Response:
        state = self.state
        extra = step.headers if step is not None else None
        if endpoint == SETTINGS:
            data = step.body if step is not None and step.body is not None else state.users[apikey]
            return JSONResponse({"status": "OK", "data": data}, status_code=_status(step, 200), headers=extra)
        if endpoint == FACE_DELETE:
            ids = body.get("ids") if isinstance(body, dict) else None
            if not isinstance(ids, list) or not 1 <= len(ids) <= MAX_DELETE_IDS:
                return _error(400, f"body must be {{'ids': [...]}} with 1 to {MAX_DELETE_IDS} ids")
            state.unmark_faces(apikey, (str(i) for i in ids))
            accepted = step.body if step is not None and step.body is not None else {"status": "OK"}
            return _answer(_status(step, 202), accepted, extra)
        assert asset_id is not None
        asset = state.owned_asset(apikey, asset_id)
        if asset is None:
            return _error(404, "asset not found")
        if endpoint == ASSET_DATA:
            data = step.body if step is not None and step.body is not None else asset
            return _answer(_status(step, 200), data, extra)
        if body is not None and not isinstance(body, dict):
            return _error(400, "body must be a JSON object")
        addon = endpoint.removeprefix(ADDON_PREFIX)
        default = state.addon_default(addon)
        status = step.status if step is not None else default.status
        if not 200 <= status < 300:
            return _answer(status, default.body) if default.body is not None else _error(status, f"HTTP {status}")
        state.mark(asset, addon)
        if step is not None and step.body is not None:
            answer: Any = step.body
        elif default.body is not None:
            answer = default.body
        elif default.async_job or status == 202:
            answer = {"status": "OK", "job_id": f"job-{uuid.uuid4().hex}"}
        else:
            answer = {"status": "OK"}
        return _answer(status, answer, extra)

    def _default_latency(self, endpoint: str) -> float:
        if endpoint.startswith(ADDON_PREFIX):
            latency = self.state.addon_default(endpoint.removeprefix(ADDON_PREFIX)).latency
            if latency is not None:
                return latency
        return self.state.api_latency

    async def _hang(self, endpoint: str, step: Step) -> None:
        """Hold the request until ``step.latency``, the hang limit, or the addon is no longer hung."""
        limit = step.latency if step.latency > 0 else self.state.hang_limit
        deadline = time.monotonic() + limit
        addon = endpoint.removeprefix(ADDON_PREFIX) if endpoint.startswith(ADDON_PREFIX) else None
        scripted = step.latency > 0 or addon is None or self.state.down_mode(addon) != "hang"
        while time.monotonic() < deadline:
            if not scripted and addon is not None and self.state.down_mode(addon) != "hang":
                return
            await asyncio.sleep(min(0.1, max(0.0, deadline - time.monotonic())))

    @staticmethod
    def _finish(call: dict[str, Any], response: Response, outcome: str) -> Response:
        call["status"] = response.status_code
        call["outcome"] = outcome
        log.debug("simulator: %s %s -> %s (%s)", call["method"], call["path"], response.status_code, outcome)
        return response

    # ------------------------------------------------------------------ the control plane
    async def _control(self, request: Request, path: str) -> Response:
        state = self.state
        method = request.method
        parts = [p for p in path.split("/")[2:] if p]
        payload: Any = {}
        raw = await request.body()
        if raw:
            try:
                payload = json.loads(raw)
            except ValueError:
                return _error(400, "control-plane body must be JSON")
        try:
            match method, parts:
                case "GET", ["health"]:
                    return JSONResponse({"status": "OK"})
                case "POST", ["reset"]:
                    state.reset()
                    return JSONResponse({"status": "OK"})
                case "PUT", ["users"]:
                    state.put_user(str(payload["apikey"]), dict(payload["settings"]))
                    return JSONResponse({"status": "OK"})
                case "POST", ["users", "remove"]:
                    state.users.pop(str(payload["apikey"]), None)
                    return JSONResponse({"status": "OK"})
                case "PUT", ["assets"]:
                    state.put_asset(str(payload["apikey"]), dict(payload["asset"]))
                    return JSONResponse({"status": "OK"})
                case "GET", ["assets", asset_id]:
                    found = state.assets.get(asset_id)
                    return JSONResponse(found[1]) if found else _error(404, "asset not found")
                case "DELETE", ["assets", asset_id]:
                    state.assets.pop(asset_id, None)
                    return JSONResponse({"status": "OK"})
                case "POST", ["scripts"]:
                    steps = [Step.from_json(s) for s in payload["steps"]]
                    state.add_script(str(payload["endpoint"]), str(payload.get("scope") or ANY), steps)
                    return JSONResponse({"status": "OK"})
                case "DELETE", ["scripts"]:
                    state.scripts.clear()
                    return JSONResponse({"status": "OK"})
                case "PUT", ["addons", addon, "default"]:
                    default = AddonDefault(
                        status=int(payload.get("status", 200)),
                        async_job=bool(payload.get("async_job", False)),
                        latency=None if payload.get("latency") is None else float(payload["latency"]),
                        body=payload.get("body"),
                    )
                    state.set_addon_default(addon, default)
                    return JSONResponse({"status": "OK"})
                case "PUT", ["addons", addon, "down"]:
                    mode = str(payload.get("mode", "503"))
                    if mode not in ("503", "hang", "close"):
                        return _error(400, "mode must be 503, hang or close")
                    state.down[addon if addon == ANY else addon_name(addon)] = mode  # type: ignore[assignment]
                    return JSONResponse({"status": "OK"})
                case "DELETE", ["addons", addon, "down"]:
                    state.down.pop(addon if addon == ANY else addon_name(addon), None)
                    return JSONResponse({"status": "OK"})
                case "PUT", ["config"]:
                    if "api_latency" in payload:
                        state.api_latency = float(payload["api_latency"])
                    if "mark_processed" in payload:
                        state.mark_processed = bool(payload["mark_processed"])
                    if "hang_limit" in payload:
                        state.hang_limit = float(payload["hang_limit"])
                    return JSONResponse({"status": "OK"})
                case "GET", ["calls"]:
                    return JSONResponse({"calls": state.select_calls(**_call_filters(request))})
                case "DELETE", ["calls"]:
                    state.calls.clear()
                    return JSONResponse({"status": "OK"})
                case "GET", ["counts"]:
                    calls = state.select_calls(**_call_filters(request))
                    by_endpoint: dict[str, int] = {}
                    for call in calls:
                        by_endpoint[call["endpoint"]] = by_endpoint.get(call["endpoint"], 0) + 1
                    return JSONResponse({"total": len(calls), "by_endpoint": by_endpoint})
        except (KeyError, TypeError, ValueError) as exc:
            return _error(400, f"bad control-plane request: {type(exc).__name__}: {exc}")
        return _error(404, "unknown control-plane route")


def _route(method: str, path: str) -> tuple[str, str | None, str] | None:
    """(endpoint label, asset id, allowed method) for a FileSpin API path, or ``None``."""
    if _SETTINGS_PATH.match(path):
        return SETTINGS, None, "GET"
    if _FACE_DELETE_PATH.match(path):
        return FACE_DELETE, None, "POST"
    if found := _DATA_PATH.match(path):
        return ASSET_DATA, found["asset_id"], "GET"
    if found := _ADDON_PATH.match(path):
        return addon_endpoint(found["addon"]), found["asset_id"], "POST"
    return None


def _scopes(endpoint: str, asset_id: str | None, apikey: str | None, body: Any) -> list[str]:
    """Script scopes that apply to a call, most specific first (``*`` is always tried last)."""
    if endpoint == SETTINGS:
        return [apikey] if apikey else []
    if endpoint == FACE_DELETE:
        ids = body.get("ids") if isinstance(body, dict) else None
        return [str(i) for i in ids] if isinstance(ids, list) else []
    return [asset_id] if asset_id else []


def _down_step(state: SimulatorState, addon: str) -> Step | None:
    mode = state.down_mode(addon)
    if mode is None:
        return None
    if mode == "503":
        return Step(status=503, body={"status": "ERROR", "error": "addon unavailable"})
    return Step(action=mode)


def _status(step: Step | None, default: int) -> int:
    return step.status if step is not None else default


def _call_filters(request: Request) -> dict[str, Any]:
    query = request.query_params
    filters: dict[str, Any] = {
        name: query[name] for name in ("asset_id", "addon", "endpoint", "path", "method") if query.get(name)
    }
    if query.get("since_seq"):
        filters["since_seq"] = int(query["since_seq"])
    return filters


async def _lifespan(receive: Receive, send: Send) -> None:
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return


def create_app(state: SimulatorState | None = None) -> SimulatorApp:
    """A new simulator app with empty (or the given) state."""
    return SimulatorApp(state)
