"""`inspector bench engine|swap|pipeline|line|review|delivery`: benchmarks, as JSON."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal, cast, get_args

import typer
from rich.console import Console
from rich.table import Table

from inspector.settings import ModelSettings

if TYPE_CHECKING:
    from inspector.bench.engine import Quantization

console = Console()

# The engine as `inspector serve` runs it: compiled unless model.compile is turned off.
COMPILE: bool = ModelSettings.model_fields["compile"].default

app = typer.Typer(help="Benchmarks.", no_args_is_help=True)


def _quantizations(values: list[str]) -> tuple[Quantization, ...]:
    """`--quantization` values, each one of model.quantization's, none twice."""
    known = get_args(ModelSettings.model_fields["quantization"].annotation)
    for i, value in enumerate(values):
        if value not in known:
            raise typer.BadParameter(
                f"{value!r} is not one of {', '.join(known)}", param_hint="--quantization"
            )
        if value in values[:i]:
            raise typer.BadParameter(f"{value!r} is named twice", param_hint="--quantization")
    return cast("tuple[Quantization, ...]", tuple(values))


def _sizes(value: str) -> tuple[int, ...]:
    """`--curve` batch sizes: positive integers, comma-separated; empty for none."""
    parts = [v.strip() for v in value.split(",") if v.strip()]
    if not all(p.isdigit() and int(p) > 0 for p in parts):
        raise typer.BadParameter(f"{value!r} is not batch sizes like 1,2,4,8", param_hint="--curve")
    return tuple(int(p) for p in parts)


def _image_size(value: str) -> tuple[int, int]:
    width, sep, height = value.lower().partition("x")
    if not sep or not width.isdigit() or not height.isdigit() or not int(width) or not int(height):
        raise typer.BadParameter(f"{value!r} is not WIDTHxHEIGHT, e.g. 640x480")
    return int(width), int(height)


@app.command("engine")
def bench_engine(
    output: Annotated[Path, typer.Option("--output", "-o", help="Where to write the JSON.")] = Path(
        "var/bench/engine.json"
    ),
    image_size: Annotated[
        list[str] | None,
        typer.Option(help="Photo size WxH; repeat to measure several sizes in one run."),
    ] = None,
    audio_s: Annotated[float, typer.Option(min=0.5, max=60, help="Voice note seconds.")] = 8.0,
    batch_size: Annotated[int, typer.Option(min=1, help="Requests per engine batch.")] = 32,
    batches: Annotated[int, typer.Option(min=1, help="Timed engine batches.")] = 3,
    rationale_tokens: Annotated[int, typer.Option(min=0, help="Rationale token bound.")] = 48,
    baseline: Annotated[
        bool, typer.Option("--baseline/--no-baseline", help="Time the seed recipe too.")
    ] = True,
    seed_requests: Annotated[
        int, typer.Option(min=5, help="Timed seed-recipe requests (after an untimed warm-up).")
    ] = 5,
    profile_runs: Annotated[
        int, typer.Option(min=0, help="Stage-by-stage profile runs (0: none).")
    ] = 3,
    attn: Annotated[str, typer.Option(help="Engine attention: auto, sdpa, eager...")] = "auto",
    quantization: Annotated[
        list[str] | None,
        typer.Option(
            help="Engine linear layers: none or fp8; repeat to compare (the first is the "
            "reference for verdict agreement)."
        ),
    ] = None,
    compile_blocks: Annotated[
        bool, typer.Option("--compile/--no-compile", help="torch.compile the engine's blocks.")
    ] = COMPILE,
    unmerged: Annotated[
        bool,
        typer.Option(
            "--unmerged/--no-unmerged",
            help="Also time the vision LoRA attached unmerged (the base before merging).",
        ),
    ] = False,
    pass_share: Annotated[
        float | None,
        typer.Option(
            min=0,
            max=1,
            help="Also time a line where this share of parts passes and only FAIL and REVIEW "
            "verdicts get a rationale (e.g. 0.95).",
        ),
    ] = None,
    shadow_share: Annotated[
        float | None,
        typer.Option(
            min=0,
            max=1,
            help="Also time a shadow adapter judging this share of the requests again in the "
            "same batches, against share 0 (e.g. 0.2).",
        ),
    ] = None,
    note_check: Annotated[
        int | None,
        typer.Option(
            min=1,
            help="Also time the note/photo disagreement check (off, flag, review, and "
            "one_position: a one-token note prompt) with transcripts of up to this many "
            "tokens (e.g. 32).",
        ),
    ] = None,
    curve: Annotated[
        str,
        typer.Option(
            help="Batch sizes of the batch-size/latency curve, comma-separated ('' for none)."
        ),
    ] = "1,2,4,8,16,32",
) -> None:
    """Full-size Phi4Multimodal (random bf16 weights) on CUDA: engine vs seed recipe."""
    from inspector.bench.engine import EngineBenchConfig, run_engine_bench

    sizes = [_image_size(v) for v in image_size or ["640x480"]]
    variants = _quantizations(quantization or ["none"])
    cfg = EngineBenchConfig(
        batch_size=batch_size,
        batches=batches,
        width=sizes[0][0],
        height=sizes[0][1],
        audio_seconds=audio_s,
        rationale_tokens=rationale_tokens,
        seed_requests=seed_requests,
        attn_implementation=attn,
        baseline=baseline,
        profile_runs=profile_runs,
        compile=compile_blocks,
        unmerged=unmerged,
        quantization=variants,
        pass_share=pass_share,
        shadow_share=shadow_share,
        note_check_tokens=note_check,
        curve_sizes=_sizes(curve),
    )
    output.parent.mkdir(parents=True, exist_ok=True)

    # Each engine's figures are written as soon as it is done: a run cut short keeps them.
    def keep(partial: dict[str, Any]) -> None:
        output.write_text(json.dumps(partial, indent=2))

    report = run_engine_bench(cfg, sizes, progress=keep)
    output.write_text(json.dumps(report, indent=2))
    _render_engine(report)
    console.print(f"JSON: {output}")


def _engine_keys(run: dict[str, Any]) -> list[str]:
    """The run's engine reports: the reference, each other quantization, the unmerged one."""
    others = [
        k
        for k in run
        if k.startswith("engine_") and k != "engine_unmerged" and not k.endswith("_error")
    ]
    return ["engine", *others, *(["engine_unmerged"] if "engine_unmerged" in run else [])]


def _engine_label(engine: dict[str, Any]) -> str:
    if engine.get("vision_lora") == "attached":
        return "engine, vision LoRA unmerged"
    linear = ", fp8 linear" if engine.get("quantization") == "fp8" else ""
    return f"engine ({engine['dtype']}{linear}, {engine['attn_implementation']})"


def _render_engine(report: dict[str, Any]) -> None:
    """The engine benchmark's table, agreement lines and stage lines, for people."""
    table = Table(title=f"{report['device']}: engine vs seed recipe")
    for column in ("photo", "path", "batch", "inspections/s", "batch p95 s", "peak GiB", "×seed"):
        table.add_column(column)
    for run in report["runs"]:
        image = run["workload"]["image"]
        seed = run.get("seed")
        for key in _engine_keys(run):
            engine = run[key]
            table.add_row(
                image,
                _engine_label(engine),
                str(engine["batch_size"]),
                f"{engine['inspections_per_s']:.2f}",
                f"{engine['batch_latency_s']['p95']:.3f}",
                f"{engine['peak_memory_gib']:.1f}",
                f"{engine['inspections_per_s'] / seed['inspections_per_s']:.1f}" if seed else "",
            )
        if seed:
            table.add_row(
                image,
                f"seed recipe ({seed['timed_requests']} timed after a warm-up)",
                "1",
                f"{seed['inspections_per_s']:.2f}",
                "",
                f"{seed['peak_memory_gib']:.1f}",
                "",
            )
    console.print(table)
    for run in report["runs"]:
        image = run["workload"]["image"]
        for key, agreement in run.items():
            if key.endswith("_agreement"):
                console.print(
                    f"{image}, {key.removesuffix('_agreement')} vs {run['engine']['quantization']}"
                    f": same leaning on {agreement['same_leaning_share']:.1%} of "
                    f"{agreement['requests']} requests, largest |ΔP(PASS)| "
                    f"{agreement['max_abs_delta_p_pass']:.4f}"
                )
        for key in _engine_keys(run):
            prof = run[key].get("profile")
            if not prof:
                continue
            ms = prof["stage_ms"]
            console.print(
                f"{image}, {_engine_label(run[key])}: preprocess "
                f"{ms['preprocess']:.0f} ms, towers {ms['towers']:.0f} ms "
                f"(MFU {prof['mfu_towers']:.0%}), prefill "
                f"{ms['prefill']:.0f} ms (MFU {prof['mfu_prefill']:.0%}), decode "
                f"{prof['decode_ms_per_step']:.1f} ms/step (floor "
                f"{prof['decode_floor_ms_per_step']:.1f})"
            )
            busiest = ", ".join(
                f"{k['name'][:48]} {k['ms_per_step']:.2f}" for k in prof["decode_kernels"][:5]
            )
            console.print(f"{image}, decode step's busiest (ms/step): {busiest}", markup=False)
        engine = run["engine"]
        verdicts, whole = engine["verdict_latency_s"]["p50"], engine["batch_latency_s"]["p50"]
        console.print(
            f"{image}: verdicts out {verdicts:.3f} s into a batch of {engine['batch_size']} "
            f"(p50), the whole batch {whole:.3f} s"
        )
        mix = engine.get("pass_share_mix")
        if mix:
            console.print(
                f"{image}, {mix['pass_share']:.0%} of parts pass, rationale for FAIL/REVIEW only: "
                f"{mix['inspections_per_s']:.2f}/s ({mix['explained_share']:.1%} explained)"
            )
        shadow = engine.get("shadow")
        if shadow:
            console.print(
                f"{image}, shadow share {shadow['shadow_share']:.0%}: "
                f"{shadow['inspections_per_s']:.2f} live inspections/s, share 0 "
                f"{shadow['inspections_per_s_share_0']:.2f}/s "
                f"({shadow['throughput_ratio']:.0%} kept)"
            )
        notes = engine.get("note_check")
        if notes:
            from inspector.bench.notes import MODES

            off = notes["modes"]["off"]
            for mode in MODES[1:]:  # each beside off
                m = notes["modes"][mode]
                console.print(
                    f"{image}, note check {mode} (transcripts ≤ {notes['transcript_tokens']} "
                    f"tokens): {m['inspections_per_s']:.2f}/s vs off {off['inspections_per_s']:.2f}"
                    f"/s ({m['throughput_ratio']:.0%} kept), verdicts {m['verdict_delay_s']:+.3f} s"
                )
        for name, error in ((k, v) for k, v in run.items() if k.endswith("_error")):
            console.print(f"{image}, {name.removesuffix('_error')} failed: {error[:300]}")
        for point in engine.get("batch_size_curve") or []:
            console.print(
                f"{image}, batch {point['batch_size']:>3}: verdicts {point['verdict_s']:.3f} s, "
                f"batch {point['batch_s']:.3f} s ({point['inspections_per_s']:.1f}/s)"
            )


@app.command("swap")
def bench_swap(
    output: Annotated[Path, typer.Option("--output", "-o", help="Where to write the JSON.")] = Path(
        "var/bench/swap.json"
    ),
    rank: Annotated[int, typer.Option(min=1, help="Site adapter rank.")] = 32,
    swaps: Annotated[int, typer.Option(min=1, help="Swaps to time.")] = 3,
    batch_size: Annotated[int, typer.Option(min=1, help="Requests per engine batch.")] = 32,
    image_size: Annotated[str, typer.Option(help="Photo size WxH.")] = "640x480",
) -> None:
    """Full-size Phi4Multimodal (random bf16 weights) on CUDA: site adapter load and hot swap."""
    from inspector.bench.swap import SwapBenchConfig, run_swap_bench

    width, height = _image_size(image_size)
    cfg = SwapBenchConfig(rank=rank, swaps=swaps, batch_size=batch_size, width=width, height=height)
    report = run_swap_bench(cfg)
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(json.dumps(report, indent=2))
    table = Table(title=f"{report['device']}: rank-{rank} site adapter, batch {batch_size}")
    columns = ("load s", "of it read+sha256 s", "in-flight batch s", "swap wait s")
    for column in (*columns, "first batch after s", "steady s"):
        table.add_column(column)
    for load, check, swap in zip(
        report["load_s"], report["read_sha256_s"], report["swaps"], strict=True
    ):
        table.add_row(
            f"{load:.3f}",
            f"{check:.3f}",
            f"{swap['in_flight_batch_s']:.3f}",
            f"{swap['swap_wait_s']:.3f}",
            f"{swap['first_batch_after_s']:.3f}",
            f"{swap['steady_batch_s']:.3f}",
        )
    console.print(table)
    console.print(f"adapter file {report['adapter_mb']:.1f} MB; JSON: {output}")


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


def _workers(value: str) -> int | Literal["gpus"]:
    """`--workers`: a count, or `gpus` for one per visible CUDA device."""
    if value == "gpus":
        return "gpus"
    if not value.isdigit() or int(value) < 1:
        raise typer.BadParameter(
            f"{value!r} is neither a count (1, 2, ...) nor gpus", param_hint="--workers"
        )
    return int(value)


@app.command("line")
def bench_line(
    rate: Annotated[float, typer.Option(min=0.1, help="Offered requests per second.")] = 25.0,
    duration: Annotated[float, typer.Option(min=1, help="Seconds of timed load.")] = 60.0,
    warmup: Annotated[float, typer.Option(min=0, help="Seconds of untimed load first.")] = 10.0,
    stations: Annotated[int, typer.Option(min=1, max=256, help="Simulated stations.")] = 8,
    workers: Annotated[
        str,
        typer.Option(
            help="Worker processes in one shared group: a count (spread over the visible "
            "GPUs when there are several, else sharing the device), or gpus (one per GPU)."
        ),
    ] = "1",
    cpu_threads: Annotated[
        int | None,
        typer.Option(
            min=1,
            help="Each worker's OMP_NUM_THREADS (default: inherited; torch then takes every "
            "core in each worker).",
        ),
    ] = None,
    image_size: Annotated[str, typer.Option(help="Photo size WxH.")] = "640x480",
    audio_s: Annotated[float, typer.Option(min=0.5, max=60, help="Voice note seconds.")] = 8.0,
    model: Annotated[
        Path, typer.Option("--model", "-m", help="Model directory the worker loads.")
    ] = Path("var/models/tiny"),
    engine: Annotated[
        str,
        typer.Option(
            help="model (--model), random-full (full-size random weights, GPU), instant "
            "(answers at once) or paced (--batch-s per batch): the last two measure the "
            "host side alone."
        ),
    ] = "model",
    random_full: Annotated[
        bool,
        typer.Option(help="Same as --engine random-full."),
    ] = False,
    batch_s: Annotated[
        float, typer.Option(min=0, help="The paced engine's seconds per batch.")
    ] = 0.5,
    device: Annotated[str, typer.Option(help="Worker model device: auto, cpu, cuda.")] = "auto",
    rationale_tokens: Annotated[int, typer.Option(min=0, help="Rationale token bound.")] = 48,
    compile_blocks: Annotated[
        bool, typer.Option("--compile/--no-compile", help="torch.compile the engine's blocks.")
    ] = COMPILE,
    quantization: Annotated[
        str, typer.Option(help="Worker linear layers: none or fp8 (model.quantization).")
    ] = "none",
    pass_share: Annotated[
        float | None,
        typer.Option(
            min=0,
            max=1,
            help="A line where this share of parts passes and only FAIL and REVIEW verdicts "
            "get a rationale (random-full draws which pass), e.g. 0.95.",
        ),
    ] = None,
    max_batch: Annotated[int, typer.Option(min=1, help="Worker batch bound.")] = 32,
    max_wait_ms: Annotated[float, typer.Option(min=0, help="Worker batch wait bound.")] = 20.0,
    drain_timeout: Annotated[
        float, typer.Option(min=1, help="Seconds to wait for the last verdicts of a phase.")
    ] = 60.0,
    store_url: Annotated[
        str | None, typer.Option(help="Database URL (default: a temporary SQLite file).")
    ] = None,
    host: Annotated[str, typer.Option(help="Broker host.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=1, max=65535, help="Broker port.")] = 1883,
    output: Annotated[Path, typer.Option("--output", "-o", help="Where to write the JSON.")] = Path(
        "var/bench/line.json"
    ),
) -> None:
    """Paced open-loop load from simulated stations through the broker and `inspector serve`."""
    from inspector.bench.fleet import ENGINE_KINDS, placement
    from inspector.bench.line import LineBenchConfig, run_line_bench
    from inspector.errors import InspectorError

    width, height = _image_size(image_size)
    if device not in ("auto", "cpu", "cuda"):
        raise typer.BadParameter(f"{device!r} is not auto, cpu or cuda", param_hint="--device")
    kind = "random-full" if random_full else engine
    if kind not in ENGINE_KINDS:
        raise typer.BadParameter(
            f"{engine!r} is not one of {', '.join(ENGINE_KINDS)}", param_hint="--engine"
        )
    try:
        count, gpus = placement(_workers(workers), device)
        cfg = LineBenchConfig(
            rate=rate,
            duration_s=duration,
            warmup_s=warmup,
            stations=stations,
            width=width,
            height=height,
            audio_seconds=audio_s,
            model=ModelSettings.model_validate(
                {
                    "path": model,
                    "device": device,
                    "max_rationale_tokens": rationale_tokens,
                    "compile": compile_blocks,
                    "quantization": _quantizations([quantization])[0],
                }
            ),
            pass_share=pass_share,
            engine=kind,
            batch_s=batch_s,
            workers=count,
            gpus=gpus,
            cpu_threads=cpu_threads,
            max_batch=max_batch,
            max_wait_ms=max_wait_ms,
            drain_timeout_s=drain_timeout,
            store_url=store_url,
            host=host,
            port=port,
        )
        report = run_line_bench(cfg)
    except InspectorError as exc:
        console.print(f"[red]error:[/] {exc.message}", markup=True, highlight=False)
        raise typer.Exit(1) from None
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(json.dumps(report, indent=2))
    _render_line(report, output)
    once = report["exactly_once"]
    if not report["measured"]["complete"]:
        console.print("[red]not every request got an answer in time[/]")
        raise typer.Exit(1)
    if not once["exactly_once"]:
        console.print(
            f"[red]not exactly once: {once['inspections']} inspections and "
            f"{once['judged_once']} judged once of {once['requests']} requests, "
            f"{once['duplicates']} duplicate verdict rows[/]"
        )
        raise typer.Exit(1)


def _render_line(report: dict[str, Any], output: Path) -> None:
    """The line benchmark's totals, one line per worker and the exactly-once count."""
    m = report["measured"]
    lat = m["latency_ms"]
    console.print(
        f"offered [bold]{m['offered_per_s']:.1f}/s[/], achieved [bold]{m['achieved_per_s']:.1f}/s"
        f"[/]; publish→verdict p50 {lat.get('p50', 0):.0f} ms, p95 {lat.get('p95', 0):.0f} ms, "
        f"p99 {lat.get('p99', 0):.0f} ms; {m['verdicts']}/{m['requests']} verdicts, "
        f"mean batch {report['worker'].get('batch_mean', 0):.1f} → {output}"
    )
    rationale = m.get("rationale_latency_ms") or {}
    if rationale:
        console.print(
            f"rationales follow their verdicts: {m['rationales']} received, publish→rationale "
            f"p50 {rationale['p50']:.0f} ms, p95 {rationale['p95']:.0f} ms"
        )
    if len(report["workers"]) > 1:
        table = Table(title=f"{len(report['workers'])} workers, one shared group")
        for column in ("worker", "GPU", "verdicts", "p95 ms", "batch", "engine busy", "CPU cores"):
            table.add_column(column, no_wrap=True)
        for w in report["workers"]:
            cores = w["cpu_cores"]
            table.add_row(
                w["worker_id"],
                w["cuda_visible_devices"] or "shared",
                str(w["verdicts"]),
                f"{w['latency_ms'].get('p95', 0):.0f}",
                f"{w.get('batch_mean', 0):.1f}",
                f"{w['engine_busy_share']:.0%}",
                f"{cores:.2f}" if cores is not None else "",
            )
        console.print(table)
    once, cpu = report["exactly_once"], report["host"]["cpu_busy_share"]
    console.print(
        f"store: {once['inspections']} inspections, {once['verdict_rows']} verdict rows, "
        f"{once['duplicates']} duplicates"
        + (f"; host CPU {cpu:.0%} busy over {report['host']['cpus']} cores" if cpu else "")
    )


@app.command("train")
def bench_train(
    output: Annotated[Path, typer.Option("--output", "-o", help="Where to write the JSON.")] = Path(
        "var/bench/train.json"
    ),
    batch_size: Annotated[
        list[int] | None, typer.Option(min=1, help="Examples per step; repeat for several.")
    ] = None,
    steps: Annotated[int, typer.Option(min=1, help="Timed steps per batch size.")] = 5,
    image_size: Annotated[str, typer.Option(help="Photo size WxH.")] = "640x480",
    audio_s: Annotated[float, typer.Option(min=0.5, max=60, help="Voice note seconds.")] = 8.0,
    rank: Annotated[int, typer.Option(min=1, max=1024, help="Site LoRA rank.")] = 32,
    checkpointing: Annotated[
        bool,
        typer.Option("--checkpointing/--no-checkpointing", help="Gradient checkpointing."),
    ] = True,
) -> None:
    """Site-adapter training steps on full-size Phi4Multimodal (random bf16 weights) on CUDA."""
    from inspector.bench.train import TrainBenchConfig, run_train_bench

    width, height = _image_size(image_size)
    cfg = TrainBenchConfig(
        batch_sizes=tuple(batch_size or (1, 4, 8)),
        steps=steps,
        width=width,
        height=height,
        audio_seconds=audio_s,
        rank=rank,
        gradient_checkpointing=checkpointing,
    )
    report = run_train_bench(cfg)
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(json.dumps(report, indent=2))
    table = Table(title=f"{report['device']}: site LoRA training steps (rank {rank})")
    for column in ("batch", "prompt tokens", "step s", "examples/s", "peak GiB"):
        table.add_column(column)
    for run in report["runs"]:
        table.add_row(
            str(run["batch_size"]),
            str(run["prompt_tokens"]),
            f"{run['step_s_median']:.3f}",
            f"{run['examples_per_s']:.2f}",
            f"{run['peak_memory_gib']:.1f}",
        )
    console.print(table)
    swap = report["adapter"]
    console.print(
        f"adapter {swap['bytes'] / 1e6:.1f} MB: saved in {swap['save_s']:.2f} s, "
        f"attached in {swap['attach_s']:.2f} s; JSON: {output}"
    )


@app.command("review")
def bench_review(
    output: Annotated[Path, typer.Option("--output", "-o", help="Where to write the JSON.")] = Path(
        "var/bench/review.json"
    ),
    count: Annotated[int, typer.Option("--count", "-n", min=100, help="Inspections seeded.")] = (
        100_000
    ),
    store_url: Annotated[
        str | None,
        typer.Option(help="An empty PostgreSQL database (default: a temporary SQLite file)."),
    ] = None,
) -> None:
    """Seed N inspections, then time the review app's queue, detail, stats and export."""
    from inspector.bench.review import ReviewBenchConfig, run_review_bench

    report = run_review_bench(ReviewBenchConfig(count=count, store_url=store_url))
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(json.dumps(report, indent=2))
    table = Table(title=f"review app, {report['inspections']} inspections on {report['database']}")
    for column in ("page", "requests", "p50 ms", "p95 ms", "target p95"):
        table.add_column(column)
    targets = {"queue": "150", "detail": "150", "stats": "500", "export": "—"}
    for name in ("queue", "detail", "stats", "export"):
        row = report[name]
        label = f"export ({row['rows']} rows)" if name == "export" else name
        table.add_row(
            label, str(row["n"]), f"{row['p50_ms']:.1f}", f"{row['p95_ms']:.1f}", targets[name]
        )
    console.print(table)
    filters = Table(title="per filter (server time; slowest against its target first)")
    for column in ("page · tab · filter", "n", "p50 ms", "p95 ms", "max ms", "target p95"):
        filters.add_column(column)
    ranked = sorted(report["filters"].items(), key=lambda kv: -kv[1]["p95_ms"] / kv[1]["target_ms"])
    for name, row in ranked:
        filters.add_row(
            name,
            str(row["n"]),
            f"{row['p50_ms']:.1f}",
            f"{row['p95_ms']:.1f}",
            f"{row['max_ms']:.1f}",
            str(row["target_ms"]),
        )
    console.print(filters)
    over = report["over_target"]
    console.print(f"slowest: {report['slowest'][0]}; over target: {', '.join(over) or 'none'}")
    console.print(f"seeded in {report['seed_s']} s; JSON: {output}")


@app.command("delivery")
def bench_delivery(
    output: Annotated[Path, typer.Option("--output", "-o", help="Where to write the JSON.")] = Path(
        "var/bench/delivery.json"
    ),
    stations: Annotated[int, typer.Option(min=1, max=64, help="Edge agents.")] = 4,
    batch_s: Annotated[float, typer.Option(min=0, help="Engine seconds per batch.")] = 0.9,
    max_batch: Annotated[int, typer.Option(min=1, help="Worker batch bound.")] = 8,
    load_s: Annotated[float, typer.Option(min=1, help="Length of the steady load.")] = 60.0,
    load_fraction: Annotated[
        float, typer.Option(min=0.01, max=1.0, help="Steady load as a share of capacity.")
    ] = 0.8,
    backlog_s: Annotated[
        float, typer.Option(min=1, help="Backlog to build, in seconds of worker time.")
    ] = 180.0,
    verdict_timeout_s: Annotated[float, typer.Option(min=1, help="Stations' timeout.")] = 30.0,
    host: Annotated[str, typer.Option(help="Broker host.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=1, max=65535, help="Broker port.")] = 1883,
) -> None:
    """Re-sends under load and under a backlog, and a re-send's latency, as JSON."""
    from inspector.bench.delivery import DeliveryBenchConfig, run_delivery_bench

    cfg = DeliveryBenchConfig(
        stations=stations,
        batch_s=batch_s,
        max_batch=max_batch,
        load_s=load_s,
        load_fraction=load_fraction,
        backlog_s=backlog_s,
        verdict_timeout_s=verdict_timeout_s,
        host=host,
        port=port,
    )
    report = run_delivery_bench(cfg)
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(json.dumps(report, indent=2))
    load, backlog, resend = report["load"], report["backlog"], report["resend"]
    console.print(
        f"load {load['requests']} at {load['offered_per_s']:.1f}/s: [bold]{load['resends']} "
        f"re-sends[/]; backlog of {backlog['requests']} drained in "
        f"{backlog['drained_in_s']:.0f} s: [bold]{backlog['resends']} re-sends[/]; "
        f"re-send to verdict p50 {resend['resend_to_verdict_s']['p50']:.2f} s, capture to "
        f"verdict p50 {resend['capture_to_verdict_s']['p50']:.1f} s → {output}"
    )
    if backlog["resends"]:
        console.print(
            "[yellow]re-sends under the backlog: did the broker drop queued requests? "
            "Mosquitto keeps 1000 per session unless max_queued_messages is lifted, as "
            "deploy/mosquitto/mosquitto.conf does (deploy/README.md, Queues)[/]"
        )
    if not report["complete"]:
        console.print("[red]not every capture got its answer in time[/]")
        raise typer.Exit(1)
