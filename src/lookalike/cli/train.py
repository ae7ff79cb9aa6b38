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
    split: Optional[str] = typer.Option(None, help="split.json: train on its training part only (see --protocol)."),
    protocol: str = typer.Option("classes", help="With --split: 'classes' trains on train_classes, "
                                                 "'images' on train_images."),
    holdout: str = typer.Option("auto", help="Validation (choosing the start and the epoch): 'classes' holds "
                                             "out whole classes (for a model meant for new classes), 'images' "
                                             "images of every class (for the same classes); auto: images with "
                                             "--protocol images, else classes."),
    loss: str = typer.Option("contrastive", help="contrastive (siamese) or triplet."),
    margin: Optional[float] = typer.Option(None, help="Loss margin (default 0.7 contrastive, 0.1 triplet)."),
    epochs: Optional[int] = typer.Option(None, help="Most epochs (with --resume: the total to reach)."),
    patience: Optional[int] = typer.Option(None, help="Stop after this many epochs without a better validation mAP."),
    train_blocks: Optional[int] = typer.Option(None, help="Last MBConv blocks to train, with the head conv (0: only GeM p and the whitening)."),
    views: Optional[int] = typer.Option(None, help="Cached views per image (1 = no augmentation)."),
    augmentation: Optional[str] = typer.Option(None, help="dihedral (quarter turns and mirrors: aerial, "
                                                          "texture, scans) or crops (images with an up)."),
    turns: str = typer.Option("auto", help="Average the descriptor over the image's four quarter turns (images "
                                           "without an up): on, off, or auto (whichever validates better; "
                                           "needs the dihedral augmentation). The model keeps the choice."),
    max_per_class: Optional[int] = typer.Option(None, help="Images used per class (0 = all)."),
    lr: Optional[float] = typer.Option(None, help="Adam learning rate."),
    whiten: str = typer.Option("auto", help="Learnable whitening: on (starts from Lw, learned from the "
                                            "positive pairs, at the ridge that validates best), auto (the "
                                            "identity is a candidate start too), off."),
    backbone: Optional[str] = typer.Option(None, help="Backbone to fine-tune (efficientnet-lite0/1/2)."),
    resume: bool = typer.Option(False, "--resume", help="Continue from the checkpoint in --out."),
    seed: int = typer.Option(0, help="Random seed."),
    as_json: bool = typer.Option(False, "--json", help="Print the summary as JSON."),
) -> None:
    """Fine-tune with hard negatives mined each epoch; writes model, checkpoint, log and plot to --out."""
    from lookalike.train import TrainConfig, train

    if loss not in ("contrastive", "triplet"):
        fail(f"--loss must be contrastive or triplet, not {loss!r}")
    if whiten not in ("auto", "on", "off"):
        fail(f"--whiten must be auto, on or off, not {whiten!r}")
    if protocol not in ("classes", "images"):
        fail(f"--protocol must be classes or images, not {protocol!r}")
    if holdout not in ("auto", "classes", "images"):
        fail(f"--holdout must be auto, classes or images, not {holdout!r}")
    if augmentation not in (None, "dihedral", "crops"):
        fail(f"--augmentation must be dihedral or crops, not {augmentation!r}")
    if turns not in ("auto", "on", "off"):
        fail(f"--turns must be auto, on or off, not {turns!r}")
    cfg = TrainConfig(loss=loss, margin=margin, whiten=whiten, seed=seed, protocol=protocol, holdout=holdout,
                      turns=turns)
    for name, value in (("epochs", epochs), ("patience", patience), ("train_blocks", train_blocks),
                        ("views", views), ("augmentation", augmentation), ("lr", lr), ("backbone", backbone)):
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
    stop = " (stopped early)" if res["stopped_early"] else ""
    white = f", whitening started from {res['whitening_start']}" if res["whitening_start"] else ""
    white += ", descriptor averaged over quarter turns" if res.get("turns") else ""
    console.print(f"model written to {res['model']} (best epoch {res['best_epoch']} of {res['epochs_run']}{stop}, "
                  f"val mAP {res['val_mAP']} on {res['val_images']} held-out images of {res['val_classes']} "
                  f"{'unseen ' if res['holdout'] == 'classes' else ''}classes{white}, {res['seconds']:.0f} s); use it with --model {res['model']}")
