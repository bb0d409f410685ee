"""The server's own ceiling: a bare ASGI app on uvicorn that answers every request with fixed bytes.

It reads the request body and answers with the bytes and headers the service gave for the
same request (``serving.py`` captures them first), on uvicorn with the settings the service
runs with (``service.run``: uvloop and httptools when installed, no access log, no proxy
headers). What the service serves per second, divided by what this serves, is the share of
the server's ceiling that the service keeps; the rest goes to the service's own work.

Run: ``python benchmarks/bare_asgi.py --port 8001 --body-file answer.json``.
"""

import argparse
from pathlib import Path

import uvicorn


def make_app(body: bytes, headers: list[tuple[bytes, bytes]]):
    """An ASGI app that drains the request and sends ``body`` with ``headers``."""
    start = {"type": "http.response.start", "status": 200,
             "headers": [*headers, (b"content-length", str(len(body)).encode())]}
    answer = {"type": "http.response.body", "body": body}

    async def app(scope, receive, send):
        if scope["type"] != "http":
            return  # lifespan: nothing to start or stop
        message = await receive()
        while message.get("more_body", False):
            message = await receive()
        await send(start)
        await send(answer)

    return app


def main(argv: list[str] | None = None) -> None:
    """Serve the fixed answer on 127.0.0.1."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--body-file", type=Path, required=True)
    args = parser.parse_args(argv)
    # The service's response headers besides the length: its content type and a request id
    # of the same size (32 hex digits).
    headers = [(b"content-type", b"application/json"), (b"x-request-id", b"0" * 32)]
    uvicorn.run(make_app(args.body_file.read_bytes(), headers), host="127.0.0.1",
                port=args.port, access_log=False, log_level="warning", proxy_headers=False,
                lifespan="off")


if __name__ == "__main__":
    main()
