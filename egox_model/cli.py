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


@bench_app.command("gga")
def bench_gga(
    json_out: bool = typer.Option(False, "--json", help="Last line: one JSON object."),
    device: str = typer.Option("cpu", help="cpu or cuda (cuda: 28,028 tokens, 40x128, bf16)."),
    tokens: int = typer.Option(None, help="Sequence length, rounded to whole latent frames."),
    kernel: str = typer.Option("chunked", help="Efficient GGA kernel: chunked or flex."),
    repeats: int = typer.Option(3, help="Timed calls per method (median reported)."),
) -> None:
    """Efficient GGA vs the dense-bias reference vs plain SDPA: time and peak memory."""
    import json

    from egox_model.bench.gga import GGABenchConfig, format_gga_bench, run_gga_bench
    result = run_gga_bench(GGABenchConfig(device=device, tokens=tokens, kernel=kernel,
                                          repeats=repeats))
    typer.echo(format_gga_bench(result))
    if json_out:
        typer.echo(json.dumps(result))


@bench_app.command("prior")
def bench_prior(
    json_out: bool = typer.Option(False, "--json", help="Last line: one JSON object."),
    repeats: int = typer.Option(3, help="Timed runs (median reported)."),
    device: str = typer.Option("cpu", help="Where lifting and rendering run: cpu or cuda."),
) -> None:
    """Fusion + lift + render of the default clip, beside open3d's projection."""
    import json

    from egox_model.bench.prior import format_prior_bench, run_prior_bench
    result = run_prior_bench(repeats=repeats, device=device)
    typer.echo(format_prior_bench(result))
    if json_out:
        typer.echo(json.dumps(result.as_dict()))


def main() -> None:
    """Console-script entry point."""
    app()


if __name__ == "__main__":
    main()
