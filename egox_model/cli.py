"""The `egox` command: demo, offline generation and benchmarks.

Each command is a thin wrapper: it parses flags into the component's config dataclass and
calls into the library, so the same code runs from Python, ROS parameters and the shell.
"""
from __future__ import annotations

import typer

app = typer.Typer(help="EgoX exo-to-ego video synthesis.", no_args_is_help=True,
                  pretty_exceptions_enable=False)
bench_app = typer.Typer(help="Benchmarks: each prints its figure beside its baseline.",
                        no_args_is_help=True)
app.add_typer(bench_app, name="bench")


def main() -> None:
    """Console-script entry point."""
    app()


if __name__ == "__main__":
    main()
