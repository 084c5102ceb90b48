"""`tvr serve` — the HTTP API and web page over one index."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer


def register(app: typer.Typer) -> None:
    """Adds `tvr serve` to `app`."""

    @app.command("serve")
    def serve_command(
        index_dir: Annotated[Path, typer.Argument(help="Index directory written by 'tvr index'.")],
        host: Annotated[str, typer.Option("--host", help="Address to listen on (default: this machine only).")] = "127.0.0.1",
        port: Annotated[int, typer.Option("--port")] = 8000,
        device: Annotated[str, typer.Option("--device", help="cpu, cuda, cuda:N.")] = "cpu",
    ) -> None:
        """Serve a search page at http://HOST:PORT/ and a JSON API under /api (docs at /docs)."""
        import uvicorn

        from tvr.cli.output import stderr_console
        from tvr.errors import TvrError
        from tvr.serve.app import create_app

        if not 0 < port < 65536:
            raise TvrError(f"--port must be in 1..65535, got {port}")
        app = create_app(index_dir, device=device)
        stderr_console().print(f"serving {index_dir} ({len(app.state.searcher)} videos) at http://{host}:{port}/")
        uvicorn.run(app, host=host, port=port, log_level="warning")
