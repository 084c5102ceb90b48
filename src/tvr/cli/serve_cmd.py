"""`tvr serve` — the HTTP API and web page over one index."""

from __future__ import annotations

import socket
from pathlib import Path
from typing import Annotated

import typer

from tvr.cli.output import PlainFlagsCommand
from tvr.errors import TvrError

LISTEN_BACKLOG = 2048  # uvicorn's default


def register(app: typer.Typer) -> None:
    """Adds `tvr serve` to `app`."""

    @app.command("serve", cls=PlainFlagsCommand)
    def serve_command(
        index_dir: Annotated[Path, typer.Argument(help="Index directory written by 'tvr index'.")],
        host: Annotated[str, typer.Option("--host", help="Address to listen on (default: this machine only).")] = "127.0.0.1",
        port: Annotated[int, typer.Option("--port", help="TCP port to listen on, 1..65535.")] = 8000,
        device: Annotated[str, typer.Option("--device", help="cpu, cuda, cuda:N.")] = "cpu",
    ) -> None:
        """Serve a search page at http://HOST:PORT/ and a JSON API under /api (docs at /docs)."""
        import uvicorn

        from tvr.progress import stderr_console
        from tvr.serve.app import create_app

        if not 0 < port < 65536:
            raise TvrError(f"--port must be in 1..65535, got {port}")
        sock = listen_socket(host, port)  # first: a busy port fails at once, not after loading the index
        try:
            app = create_app(index_dir, device=device)
            stderr_console().print(
                f"serving {index_dir} ({len(app.state.searcher)} videos) at http://{_address(host, port)}/",
                soft_wrap=True, markup=False, highlight=False,
            )
            uvicorn.Server(uvicorn.Config(app, log_level="warning", backlog=LISTEN_BACKLOG)).run(sockets=[sock])
        finally:
            sock.close()


def listen_socket(host: str, port: int) -> socket.socket:
    """A TCP socket bound to HOST:PORT and listening, set up as uvicorn sets up its own; a TvrError
    naming the address when that is not possible (port in use, no permission, unknown host)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.listen(LISTEN_BACKLOG)
    except OSError as exc:
        sock.close()
        raise TvrError(f"cannot listen on {_address(host, port)} ({exc.strerror or exc})") from None
    return sock


def _address(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
