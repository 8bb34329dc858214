"""RouterMiddleware mounted in front of an existing Starlette app."""

from __future__ import annotations

import httpx
import openai
from conftest import policy_text
from servers import FakeUpstream, serve
from starlette.applications import Starlette
from starlette.responses import JSONResponse
from starlette.routing import Route

from router import RouterMiddleware


def test_middleware_serves_v1_and_passes_the_rest(tmp_path) -> None:  # type: ignore[no-untyped-def]
    async def home(request):  # type: ignore[no-untyped-def]
        return JSONResponse({"app": "mine"})

    inner = Starlette(routes=[Route("/", home), Route("/v1-not-ours", home)])
    with (
        serve(FakeUpstream("local"), lifespan="off") as lurl,
        serve(FakeUpstream("cloud"), lifespan="off") as curl,
    ):
        policy = tmp_path / "p.yaml"
        policy.write_text(policy_text(lurl, curl, tmp_path / "r.jsonl"))
        app = RouterMiddleware(inner, policy=str(policy), scorer_factory=None)
        with serve(app) as url:
            assert httpx.get(f"{url}/").json() == {"app": "mine"}
            assert httpx.get(f"{url}/v1-not-ours").json() == {"app": "mine"}
            assert httpx.get(f"{url}/missing").status_code == 404  # the app's own 404
            c = openai.OpenAI(base_url=f"{url}/v1", api_key="k", max_retries=0)
            raw = c.chat.completions.with_raw_response.create(
                model="auto", messages=[{"role": "user", "content": "via middleware"}]
            )
            assert raw.headers["x-router-route"] == "local"
            assert raw.parse().choices[0].message.content.startswith("[DEMO local model]")
            assert app.runtime.started  # lifespan reached the router through the app
