"""The live view's web application: its routes and the token gate in front of them. Built once per
view by `create_app`; the handlers read the view from `request.app.state`."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response, StreamingResponse
from starlette.routing import Route

from edgeleuk.runtime.access import COOKIE, authorised, host_of

POST_HEADER = "x-edgeleuk"  # state-changing requests carry it: a cross-site form or image cannot
TYPES = {"html": "text/html; charset=utf-8", "js": "text/javascript; charset=utf-8", "css": "text/css; charset=utf-8"}
NO_STORE = {"Cache-Control": "no-store"}


class TokenGate:
    """421 for a Host the view is not served under (DNS rebinding); 401 for every request without
    the token (when there is one), streams and the log included."""

    def __init__(self, app: Any, view: Any) -> None:
        self.app, self.view = app, view

    async def __call__(self, scope, receive, send) -> None:
        view = self.view
        host = host_of(scope) if scope["type"] == "http" else None
        if host is not None and view.hosts is not None and host not in view.hosts:
            response = PlainTextResponse(f"421: this live view answers to {', '.join(sorted(view.hosts))} "
                                         "(serve.hosts in the config adds names)", 421)
        elif scope["type"] != "http" or view.token is None or authorised(scope, view.token):
            return await self.app(scope, receive, send)
        else:
            response = PlainTextResponse("401: this live view needs its token (printed when the run started)", 401,
                                         headers={"WWW-Authenticate": "Bearer"})
        await response(scope, receive, send)


async def page(request: Request) -> Response:
    view = request.app.state.view
    response = Response(request.app.state.assets["index.html"], media_type=TYPES["html"], headers=NO_STORE)
    if view.token is not None:  # the page's own requests (the stream, the status) carry it as a cookie
        response.set_cookie(COOKIE, view.token, httponly=True, samesite="strict")
    return response


async def asset(request: Request) -> Response:
    name, assets = request.path_params["name"], request.app.state.assets
    if name not in assets or name == "index.html":  # only the page's own files, by exact name
        return PlainTextResponse("not found", 404)
    return Response(assets[name], media_type=TYPES[name.rsplit(".", 1)[1]])


async def status(request: Request) -> Response:
    return JSONResponse(request.app.state.view.status(), headers=NO_STORE)


async def frame(request: Request) -> Response:
    data = await request.app.state.frames.latest()
    if data is None:
        return PlainTextResponse("no frame yet", 503)
    return Response(data, media_type="image/jpeg", headers=NO_STORE)


async def stream(request: Request) -> Response:
    return StreamingResponse(
        request.app.state.frames.stream(request), media_type="multipart/x-mixed-replace; boundary=frame",
        headers=NO_STORE
    )


def _unforged(request: Request) -> Response | None:
    if request.headers.get(POST_HEADER) != "1":
        return PlainTextResponse(f"403: send the {POST_HEADER}: 1 header (the page does)", 403)
    return None


async def new_sample(request: Request) -> Response:
    refused = _unforged(request)
    if refused is not None:
        return refused
    request.app.state.view.control.new_sample()
    return JSONResponse({"ok": True, "action": "new sample"}, status_code=202)


async def stop(request: Request) -> Response:
    refused = _unforged(request)
    if refused is not None:
        return refused
    request.app.state.view.control.stop("stopped from the web page")
    return JSONResponse({"ok": True, "action": "stop"}, status_code=202)


async def save(request: Request) -> Response:
    refused = _unforged(request)
    if refused is not None:
        return refused
    code, reply = await asyncio.to_thread(request.app.state.view.save_field, request.path_params["label"])
    return JSONResponse(reply, status_code=code)


async def log(request: Request) -> Response:
    path = request.app.state.view.log
    if path is None or not path.is_file():
        return PlainTextResponse("this run writes no log (start it with --log or log.folder)", 404)
    return StreamingResponse(log_lines(path), media_type="application/x-ndjson",
                             headers={"Content-Disposition": f'attachment; filename="{path.name}"', **NO_STORE})


ROUTES = [Route("/", page), Route("/static/{name}", asset), Route("/api/status", status),
          Route("/frame.jpg", frame), Route("/stream.mjpg", stream), Route("/api/log", log),
          Route("/api/new-sample", new_sample, methods=["POST"]), Route("/api/stop", stop, methods=["POST"]),
          Route("/api/save/{label}", save, methods=["POST"])]


def create_app(view: Any, frames: Any) -> Starlette:
    """The application for one live view (`view`: a LiveView; `frames`: its FrameHub)."""
    app = Starlette(routes=ROUTES, middleware=[Middleware(TokenGate, view=view)])
    app.state.view, app.state.frames, app.state.assets = view, frames, view.page_assets()
    return app


async def log_lines(path: Path, chunk: int = 1 << 16):
    """The log as it is now, up to its last complete line (the run keeps appending while it is read)."""
    size = path.stat().st_size
    with open(path, "rb") as fh:
        sent, tail = 0, b""
        while sent < size:
            data = fh.read(min(chunk, size - sent))
            if not data:
                break
            sent += len(data)
            data = tail + data
            cut = data.rfind(b"\n") + 1
            tail = data[cut:]
            if cut:
                yield data[:cut]
            await asyncio.sleep(0)
