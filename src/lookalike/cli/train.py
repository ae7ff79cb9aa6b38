"""``lookalike train``: fine-tune the backbone on labelled images (siamese / triplet)."""
from __future__ import annotations

from typing import Optional

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from lookalike.cli.app import app, console, err_console, fail, print_json


@app.command("train")
def train_cmd(
    data: str = typer.Argument(..., help="Folder of class subfolders, a dataset folder with labels in "
                                         "gt.json, or a CSV of image_a,image_b,match rows."),
    out: str = typer.Option(..., "--out", "-o", help="Model folder to write (use it with --model)."),
    split: Optional[str] = typer.Option(None, help="split.json: train on its train_classes only."),
    loss: str = typer.Option("contrastive", help="contrastive (siamese) or triplet."),
    margin: Optional[float] = typer.Option(None, help="Loss margin (default 0.7 contrastive, 0.1 triplet)."),
    epochs: Optional[int] = typer.Option(None, help="Epochs (with --resume: the total to reach)."),
    train_blocks: Optional[int] = typer.Option(None, help="Last MBConv blocks to train (plus head conv and GeM p)."),
    views: Optional[int] = typer.Option(None, help="Cached views per image (1 = no augmentation)."),
    max_per_class: Optional[int] = typer.Option(None, help="Images used per class (0 = all)."),
    queries: Optional[int] = typer.Option(None, "--queries", help="Training tuples mined per epoch."),
    lr: Optional[float] = typer.Option(None, help="Adam learning rate."),
    whiten: bool = typer.Option(False, "--whiten", help="Also learn a whitening from the positive pairs (Lw)."),
    backbone: Optional[str] = typer.Option(None, help="Backbone to fine-tune (efficientnet-lite0/1/2)."),
    resume: bool = typer.Option(False, "--resume", help="Continue from the checkpoint in --out."),
    seed: int = typer.Option(0, help="Random seed."),
    as_json: bool = typer.Option(False, "--json", help="Print the summary as JSON."),
) -> None:
    """Fine-tune with hard negatives mined each epoch; writes model, checkpoint, log and plot to --out."""
    from lookalike.train import TrainConfig, train

    if loss not in ("contrastive", "triplet"):
        fail(f"--loss must be contrastive or triplet, not {loss!r}")
    cfg = TrainConfig(loss=loss, margin=margin, whiten=whiten, seed=seed)
    for name, value in (("epochs", epochs), ("train_blocks", train_blocks), ("views", views),
                        ("queries_per_epoch", queries), ("lr", lr), ("backbone", backbone)):
        if value is not None:
            setattr(cfg, name, value)
    if max_per_class is not None:
        cfg.max_per_class = max_per_class or None
    with Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                  TimeElapsedColumn(), TimeRemainingColumn(), console=err_console,
                  disable=as_json) as prog:
        tasks: dict[str, int] = {}

        def progress(stage: str, done: int, total: int) -> None:
            if stage not in tasks:
                tasks[stage] = prog.add_task(stage, total=total)
            prog.update(tasks[stage], completed=done, total=total)

        try:
            res = train(data, out, split=split, cfg=cfg, resume=resume, progress=progress)
        except (FileNotFoundError, ValueError) as e:
            fail(str(e))
    if as_json:
        print_json({k: v for k, v in res.items() if k != "config"})
        return
    for row in res["history"]:
        console.print(f"epoch {row['epoch']}: loss {row['loss']}  val mAP {row['val_mAP']}  p {row['p']}")
    console.print(f"model written to {res['model']} (best epoch {res['best_epoch']}, "
                  f"{res['seconds']:.0f} s); use it with --model {res['model']}")
