"""A loopback reverse proxy that adds ``Authorization: Bearer <token>`` to every request.

The MCP conformance suite's ``--url`` sends no headers, and ``aiops mcp --http`` refuses a request
without a token; this sits between them. Streams responses through unchanged (SSE included).

    python -m tests.conformance.auth_proxy --listen-port 0 --upstream http://127.0.0.1:8765 --token T
prints ``listening on http://127.0.0.1:<port>`` once ready.
"""

from __future__ import annotations

import argparse
import asyncio

import aiohttp
from aiohttp import web

SESSION = web.AppKey("session", aiohttp.ClientSession)
_HOP = {"connection", "keep-alive", "transfer-encoding", "host", "content-length", "authorization"}


def make_app(upstream: str, token: str) -> web.Application:
    async def forward(request: web.Request) -> web.StreamResponse:
        session: aiohttp.ClientSession = request.app[SESSION]
        headers = {k: v for k, v in request.headers.items() if k.lower() not in _HOP}
        headers["Authorization"] = f"Bearer {token}"
        body = await request.read()
        async with session.request(
            request.method, upstream + request.rel_url.path_qs, headers=headers, data=body
        ) as upstream_response:
            response = web.StreamResponse(status=upstream_response.status)
            for key, value in upstream_response.headers.items():
                if key.lower() not in _HOP:
                    response.headers[key] = value
            await response.prepare(request)
            try:
                async for chunk in upstream_response.content.iter_any():
                    await response.write(chunk)
                await response.write_eof()
            except ConnectionResetError:
                pass  # the client hung up mid-stream (the suite closes SSE streams early): nothing to do
            return response

    async def open_session(app: web.Application) -> None:
        app[SESSION] = aiohttp.ClientSession(auto_decompress=False)

    async def close_session(app: web.Application) -> None:
        await app[SESSION].close()

    app = web.Application()
    app.on_startup.append(open_session)
    app.on_cleanup.append(close_session)
    app.router.add_route("*", "/{tail:.*}", forward)
    return app


async def serve(listen_port: int, upstream: str, token: str) -> None:
    runner = web.AppRunner(make_app(upstream.rstrip("/"), token))
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", listen_port)
    await site.start()
    port = runner.addresses[0][1]
    print(f"listening on http://127.0.0.1:{port}", flush=True)
    try:
        await asyncio.Event().wait()
    finally:
        await runner.cleanup()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--listen-port", type=int, default=0)
    parser.add_argument("--upstream", required=True)
    parser.add_argument("--token", required=True)
    args = parser.parse_args()
    asyncio.run(serve(args.listen_port, args.upstream, args.token))


if __name__ == "__main__":
    main()
