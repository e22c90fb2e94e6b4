"""`inspector bench engine`: engine throughput next to the seed recipe, as JSON."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

console = Console()

app = typer.Typer(help="Benchmarks.", no_args_is_help=True)


@app.command("engine")
def bench_engine(
    output: Annotated[Path, typer.Option("--output", "-o", help="Where to write the JSON.")] = Path(
        "var/bench/engine.json"
    ),
    batch_size: Annotated[int, typer.Option(help="Requests per engine batch.")] = 32,
    batches: Annotated[int, typer.Option(help="Timed engine batches.")] = 3,
    rationale_tokens: Annotated[int, typer.Option(help="Rationale token bound.")] = 48,
    seed_requests: Annotated[int, typer.Option(help="Timed seed-recipe requests.")] = 4,
    attn: Annotated[str, typer.Option(help="Engine attention: auto, sdpa, eager...")] = "auto",
    skip_seed: Annotated[bool, typer.Option(help="Measure the engine only.")] = False,
) -> None:
    """Full-size Phi4Multimodal (random bf16 weights) on CUDA: engine vs seed recipe."""
    from inspector.bench.engine import EngineBenchConfig, run_engine_bench

    cfg = EngineBenchConfig(
        batch_size=batch_size,
        batches=batches,
        rationale_tokens=rationale_tokens,
        seed_requests=seed_requests,
        attn_implementation=attn,
        skip_seed=skip_seed,
    )
    report = run_engine_bench(cfg)
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(json.dumps(report, indent=2))
    table = Table(title=f"{report['device']}: {report['workload']}")
    for column in ("path", "dtype", "attention", "batch", "inspections/s"):
        table.add_column(column)
    for name in ("seed", "engine"):
        if name in report:
            row = report[name]
            table.add_row(
                name,
                row["dtype"],
                row["attn_implementation"],
                str(row["batch_size"]),
                f"{row['inspections_per_s']:.2f}",
            )
    console.print(table)
    if "speedup" in report:
        console.print(f"engine / seed: {report['speedup']:.1f}×  (JSON: {output})")


@app.command("pipeline")
def bench_pipeline(
    output: Annotated[Path, typer.Option("--output", "-o", help="Where to write the JSON.")] = Path(
        "var/bench/pipeline.json"
    ),
    requests: Annotated[int, typer.Option(min=10, help="Timed requests.")] = 2000,
    warmup: Annotated[int, typer.Option(min=0, help="Untimed requests first.")] = 200,
    publishers: Annotated[int, typer.Option(min=1, max=64, help="Publishing clients.")] = 2,
    window: Annotated[int, typer.Option(min=1, help="Most requests awaiting a verdict.")] = 256,
    drain: Annotated[
        int, typer.Option(min=0, help="Requests queued while the worker is away, then drained.")
    ] = 900,
    max_batch: Annotated[int, typer.Option(min=1, help="Worker batch bound.")] = 64,
    store_url: Annotated[
        str | None, typer.Option(help="Database URL (default: a temporary SQLite file).")
    ] = None,
    host: Annotated[str, typer.Option(help="Broker host.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=1, max=65535, help="Broker port.")] = 1883,
) -> None:
    """Host path (MQTT in, validate, store, MQTT out) with an instant engine, as JSON."""
    from inspector.bench.pipeline import PipelineBenchConfig, run_pipeline_bench

    cfg = PipelineBenchConfig(
        requests=requests,
        warmup=warmup,
        publishers=publishers,
        window=window,
        drain=drain,
        max_batch=max_batch,
        store_url=store_url,
        host=host,
        port=port,
    )
    report = run_pipeline_bench(cfg)
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(json.dumps(report, indent=2))
    lat = report["latency_ms"]
    console.print(
        f"[bold]{report['requests_per_s']:.0f} requests/s[/] over {report['requests']} requests "
        f"({report['payload_bytes'] // 1024} KiB each), latency p50 {lat['p50']:.1f} ms, "
        f"p95 {lat['p95']:.1f} ms; mean batch {report['batch_mean']:.1f}; worker CPU "
        f"{report['worker_cpu_ms_per_request']:.2f} ms/request → {output}"
    )
    if report["drain"]:
        d = report["drain"]
        console.print(
            f"drain of {d['requests']} queued requests: [bold]{d['requests_per_s']:.0f} "
            f"requests/s[/], worker process CPU {d['process_cpu_ms_per_request']:.2f} ms/request"
        )
    if not report["complete"] or (report["drain"] and not report["drain"]["complete"]):
        console.print("[red]not every request got a verdict in time[/]")
        raise typer.Exit(1)
