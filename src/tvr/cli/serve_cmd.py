"""`tvr serve` — the HTTP API and web page over one index."""

from __future__ import annotations

import socket
from pathlib import Path
from typing import Annotated

import typer

from tvr.cli.output import PlainFlagsCommand
from tvr.errors import TvrError

LISTEN_BACKLOG = 2048  # uvicorn's default
LOOPBACK = ("127.0.0.1", "::1", "localhost")


def register(app: typer.Typer) -> None:
    """Adds `tvr serve` to `app`."""

    @app.command("serve", cls=PlainFlagsCommand)
    def serve_command(
        index_dir: Annotated[Path, typer.Argument(help="Index directory written by 'tvr index'.")],
        host: Annotated[str, typer.Option("--host", help="Address to listen on (default: this machine only).")] = "127.0.0.1",
        port: Annotated[int, typer.Option("--port", help="TCP port to listen on, 1..65535.")] = 8000,
        device: Annotated[str, typer.Option("--device", help="cpu, cuda, cuda:N.")] = "cpu",
        allowed_host: Annotated[list[str] | None, typer.Option("--allowed-host", help="Answer only requests whose Host header is this name (repeatable; '*.example.org' allowed). Use it when listening beyond loopback (DNS rebinding).")] = None,
        show_paths: Annotated[bool, typer.Option("--show-paths", help="Include the videos' absolute paths on the server's disk in responses.")] = False,
        header_timeout: Annotated[float, typer.Option("--header-timeout", help="Seconds a client has to send a request's headers.")] = 10.0,
        keep_alive: Annotated[int, typer.Option("--keep-alive", help="Seconds an idle keep-alive connection stays open.")] = 5,
    ) -> None:
        """Serve a search page at http://HOST:PORT/ and a JSON API under /api (schema at /openapi.json)."""
        import uvicorn

        from tvr.progress import stderr_console
        from tvr.serve.app import create_app
        from tvr.serve.protocol import protocol_with_timeout

        if not 0 < port < 65536:
            raise TvrError(f"--port must be in 1..65535, got {port}")
        if not header_timeout > 0 or keep_alive < 1:
            raise TvrError("--header-timeout must be > 0 and --keep-alive at least 1")
        hosts = [h.strip() for h in allowed_host or [] if h.strip()]
        sock = listen_socket(host, port)  # first: a busy port fails at once, not after loading the index
        try:
            app = create_app(index_dir, device=device, show_paths=show_paths, allowed_hosts=hosts)
            console = stderr_console()
            console.print(
                f"serving {index_dir} ({len(app.state.searcher)} videos) at http://{_address(host, port)}/",
                soft_wrap=True, markup=False, highlight=False,
            )
            if not hosts and host not in LOOPBACK:
                console.print(f"note: listening on {host} with no --allowed-host; any Host header is answered "
                              "(pass --allowed-host NAME against DNS rebinding)", soft_wrap=True, markup=False, highlight=False)
            config = uvicorn.Config(app, log_level="warning", backlog=LISTEN_BACKLOG, timeout_keep_alive=keep_alive,
                                    http=protocol_with_timeout(header_timeout), proxy_headers=False)
            uvicorn.Server(config).run(sockets=[sock])
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
