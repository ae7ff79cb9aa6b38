"""``lookalike eval``: mAP, P@k, R@k, extraction rate and query time on a benchmark dataset."""
from __future__ import annotations

from typing import Optional

import typer
from rich.table import Table

from lookalike.cli.app import (FLIP, FOREGROUND, MAX_SIDE, SCALES, TURNS, app, console, extraction_options, print_json,
                  progress_bar)


@app.command("eval")
def eval_cmd(
    dataset: str = typer.Argument(..., help="Dataset folder with gt.json (lookalike-benchmark/1)."),
    pipeline: str = typer.Option("default", "--pipeline", "-p", help="Pipeline spec, e.g. default+aqe."),
    rerank: Optional[str] = typer.Option(None, help="Re-rank steps to add, e.g. dba+aqe."),
    compare: Optional[str] = typer.Option(None, help="Colour pipeline only: pearson, bhattacharyya, chi2, cosine."),
    split: Optional[str] = typer.Option(None, help="split.json: evaluate among its test part only (see --protocol)."),
    protocol: str = typer.Option("classes", help="With --split: 'classes' scores the test_classes' images "
                                                 "(unseen classes), 'images' the test_images (seen classes)."),
    holdout_last: Optional[int] = typer.Option(None, help="Learn on all but the last N images; score on those N."),
    model: Optional[str] = typer.Option(None, help="A fine-tuned model folder: with pipeline default or gem, its GeM descriptor."),
    fit_on: Optional[str] = typer.Option(None, help="Dataset whose images fit learned steps (e.g. whitening); "
                                         "text: the caption datasets (comma-separated) that train the bridge."),
    max_side: Optional[int] = MAX_SIDE,
    scales: Optional[str] = SCALES,
    flip: bool = FLIP,
    turns: bool = TURNS,
    foreground: Optional[str] = FOREGROUND,
    rotate: bool = typer.Option(False, "--rotate", help="Also query with each image turned 90° each way; "
                                                        "each result keeps its best score."),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object."),
) -> None:
    """Score a pipeline on a dataset. Features are cached, so a second run is fast."""
    from lookalike.eval.runner import evaluate

    spec = pipeline + (f"+{rerank}" if rerank else "")
    options = {**{k: v for k, v in (("compare", compare), ("model", model), ("fit_on", fit_on)) if v is not None},
               **extraction_options(max_side, scales, flip, foreground, turns)}
    with progress_bar("describing", enabled=not as_json) as update:
        res = evaluate(dataset, spec, options, split=split, holdout_last=holdout_last, progress=update,
                       rotate=rotate, protocol=protocol)
    if as_json:
        print_json(res)
        return
    table = Table("metric", "value")
    for key, v in res.items():
        table.add_row(key, f"{v:.4f}" if isinstance(v, float) else str(v))
    console.print(table)
