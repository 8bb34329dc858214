"""The floor: the cheapest OpenAI proxy there is in Python, for bench/overhead.

A Starlette app that forwards POST /v1/chat/completions to one upstream with one
shared aiohttp session and streams the answer back. No policy, no records, no
validation: what the router costs beyond this is what its features cost.

    python bench/overhead/minimal_proxy.py --upstream http://127.0.0.1:18900 --port 18901
"""

from __future__ import annotations

import argparse
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import aiohttp
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route

UPSTREAM = "http://127.0.0.1:18900"
session: aiohttp.ClientSession | None = None


@asynccontextmanager
async def lifespan(app: Starlette) -> AsyncIterator[None]:
    global session
    connector = aiohttp.TCPConnector(limit=256)
    session = aiohttp.ClientSession(connector=connector, auto_decompress=False)
    yield
    await session.close()


async def chat(request: Request) -> Response:
    assert session is not None
    body = await request.body()
    upstream = await session.post(
        UPSTREAM + "/v1/chat/completions",
        data=body,
        headers={"content-type": "application/json"},
    )
    kind = upstream.headers.get("content-type", "application/json")
    if kind.startswith("text/event-stream"):

        async def relay() -> AsyncIterator[bytes]:
            try:
                async for chunk in upstream.content.iter_any():
                    yield chunk
            finally:
                upstream.release()

        return StreamingResponse(relay(), status_code=upstream.status, media_type=kind)
    data = await upstream.read()
    upstream.release()
    return Response(data, status_code=upstream.status, media_type=kind)


app = Starlette(routes=[Route("/v1/chat/completions", chat, methods=["POST"])], lifespan=lifespan)


def main() -> None:
    global UPSTREAM
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--upstream", default=UPSTREAM)
    parser.add_argument("--port", type=int, default=18901)
    args = parser.parse_args()
    UPSTREAM = args.upstream.rstrip("/")
    uvicorn.run(
        app,
        host="127.0.0.1",
        port=args.port,
        log_level="warning",
        http="httptools",
        loop="uvloop",
        access_log=False,
    )


if __name__ == "__main__":
    main()
