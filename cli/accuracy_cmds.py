"""`hwnas train-supernet`, `hwnas evaluate`, `hwnas train`, `hwnas predictor fit`."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Optional

import typer

from hwnas.cli.common import err, interrupted, out, parse_space_settings, read_archs
from hwnas.errors import UserError


def _space(name: str, settings: Optional[str]):
    from hwnas.space import get_space

    return get_space(name, **parse_space_settings(settings))


def _threads(n: Optional[int]) -> None:
    if n:
        import torch

        torch.set_num_threads(n)


def _print_results(rows: list[dict], as_json: bool, title: str) -> None:
    if as_json:
        for r in rows:
            out.print(json.dumps(r), markup=False)
        return
    from rich.table import Table

    t = Table(title=title)
    t.add_column("id")
    key = "accuracy" if rows and "accuracy" in rows[0] else "score"
    t.add_column(key, justify="right")
    for r in rows:
        t.add_row(r["id"], f"{100 * r['accuracy']:.2f}%" if key == "accuracy" else f"{r['score']:.6g}")
    out.print(t)


def _evaluator_space(spec: str, name: Optional[str], settings: Optional[str]):
    """``--space`` (with settings), or the space a checkpoint or predictor file was made for."""
    kind, _, arg = spec.partition(":")
    if name is not None:
        return _space(name, settings)
    if kind == "supernet" and arg:
        from hwnas.accuracy.supernet.checkpoint import load_checkpoint
        from hwnas.space import space_from_config

        meta, _, _ = load_checkpoint(arg)
        return space_from_config(meta["space"], meta["space_config"])
    if kind == "predictor" and arg:
        from hwnas.accuracy.predictor import predictor_space

        return predictor_space(arg)
    raise UserError(f"--space is needed with evaluator {spec!r} (hwnas list spaces)")


def register(app: typer.Typer) -> None:
    @app.command("train-supernet")
    def train_supernet_cmd(
        out_path: Path = typer.Option(..., "--out", help="checkpoint file to write (updated every epoch)"),
        space: str = typer.Option("mbv3-32", "--space", help="MBConv space: mbv3-32 or mbv3-224"),
        space_settings: Optional[str] = typer.Option(None, "--space-settings", help="JSON object overriding the space's config"),
        data: str = typer.Option("digits", "--data", help="digits, cifar10[:PATH] or imagefolder:PATH"),
        epochs: int = typer.Option(10, "--epochs", help="training epochs (more may be added later with --resume)"),
        seed: int = typer.Option(0, "--seed", help="seed of the weights, the sampled subnets and the data order"),
        batch_size: int = typer.Option(64, "--batch-size", help="global batch (split across torchrun processes)"),
        lr: float = typer.Option(0.05, "--lr", help="peak SGD learning rate (cosine schedule)"),
        kernel_transform: bool = typer.Option(False, "--kernel-transform/--center-crop",
                                              help="OFA's learned kernel transform, or a plain centre crop"),
        train_limit: Optional[int] = typer.Option(None, "--train-limit", help="train on this many images (seeded subset)"),
        val_limit: Optional[int] = typer.Option(None, "--val-limit", help="evaluate on this many val images"),
        device: str = typer.Option("auto", "--device", help="auto, cpu, cuda"),
        threads: Optional[int] = typer.Option(None, "--threads", help="torch CPU threads"),
        resume: bool = typer.Option(False, "--resume", help="continue from --out if it exists"),
        force: bool = typer.Option(False, "--force", help="overwrite an existing --out"),
        download: bool = typer.Option(False, "--download", help="let torchvision download CIFAR-10"),
        no_progress: bool = typer.Option(False, "--no-progress", help="no progress bar or progress lines"),
    ) -> None:
        """Train a weight-sharing supernet (sandwich rule, in-place distillation). Works under torchrun."""
        from hwnas.accuracy.supernet.train import SupernetTrainConfig, train_supernet

        _threads(threads)
        sp = _space(space, space_settings)
        cfg = SupernetTrainConfig(data=data, epochs=epochs, batch_size=batch_size, lr=lr, kernel_transform=kernel_transform,
                                  seed=seed, train_limit=train_limit, val_limit=val_limit, device=device)
        try:
            result = train_supernet(sp, cfg, out_path, resume=resume, force=force, progress=not no_progress, download=download)
        except KeyboardInterrupt:
            interrupted(f"checkpoint saved, continue with --resume --out {out_path}")
        hist = result.meta.get("history", [])
        if hist and os.environ.get("RANK", "0") == "0":
            last = hist[-1]
            err.print(f"wrote {out_path}: {result.meta['epoch']} epochs, loss {last['loss']:.3f}, "
                      f"{last['images_per_s']:.0f} img/s", markup=False)

    @app.command("evaluate")
    def evaluate_cmd(
        arch: str = typer.Option(..., "--arch", help="arch file: one JSON object per line ('-' for stdin)"),
        evaluator: Optional[str] = typer.Option(None, "--evaluator", help="any evaluator (hwnas list evaluators): "
                                                "supernet:CKPT, train:E, table:CSV#COL, predictor:FILE, zc:NAME"),
        supernet: Optional[Path] = typer.Option(None, "--supernet", help="shorthand for --evaluator supernet:CKPT"),
        space: Optional[str] = typer.Option(None, "--space", help="search space; default: the one a checkpoint or predictor names"),
        space_settings: Optional[str] = typer.Option(None, "--space-settings", help="JSON object overriding the space's config"),
        data: Optional[str] = typer.Option(None, "--data", help="dataset for zc: and train: (default digits); supernet: defaults to its own"),
        seed: Optional[int] = typer.Option(None, "--seed", help="seed of zc: (image batch, initial weights) and train:"),
        split: Optional[str] = typer.Option(None, "--split", help="val (search) or test (final reports), for supernet: and train:"),
        bn_images: Optional[int] = typer.Option(None, "--bn-images", help="supernet: training images for BatchNorm recalibration (500)"),
        train_limit: Optional[int] = typer.Option(None, "--train-limit", help="train: train on this many images (seeded subset)"),
        threads: Optional[int] = typer.Option(None, "--threads", help="torch CPU threads (default: all cores)"),
        as_json: bool = typer.Option(False, "--json", help="one JSON line per arch: id, accuracy (and score for proxies)"),
    ) -> None:
        """Score each arch with any evaluator: accuracy where it estimates one, a proxy's score otherwise."""
        from hwnas.accuracy import get_evaluator

        _threads(threads)
        if supernet is not None:
            if evaluator is not None:
                raise UserError("give --evaluator or its shorthand --supernet, not both")
            evaluator = f"supernet:{supernet}"
        if evaluator is None:
            raise UserError("say which evaluator: --evaluator SPEC (hwnas list evaluators) or --supernet CKPT")
        if split is not None and split not in ("val", "test"):
            raise UserError(f"--split must be val or test, got {split!r}")
        sp = _evaluator_space(evaluator, space, space_settings)
        archs = read_archs(arch, sp)
        options = {k: v for k, v in {"data": data, "seed": seed, "split": split, "bn_images": bn_images,
                                     "train_limit": train_limit}.items() if v is not None}
        if evaluator.startswith("train:"):
            options["progress"] = not as_json
        ev = get_evaluator(evaluator, sp, **options)
        rows = []
        for a in archs:  # print as each finishes: training and proxies take seconds each
            value = ev.evaluate([a])[0]
            row = {"id": a.id, "accuracy": value} if ev.estimates_accuracy else {"id": a.id, "score": value}
            rows.append(row)
            if as_json:
                out.print(json.dumps(row), markup=False)
        if not as_json:
            _print_results(rows, False, f"{ev.spec} on {sp.name}")

    @app.command("train")
    def train_cmd(
        arch: str = typer.Option(..., "--arch", help="arch file: one JSON object per line ('-' for stdin)"),
        space: str = typer.Option("mbv3-32", "--space", help="search space the archs belong to (hwnas list spaces)"),
        space_settings: Optional[str] = typer.Option(None, "--space-settings", help="JSON object overriding the space's config"),
        data: str = typer.Option("digits", "--data", help="digits, cifar10[:PATH] or imagefolder:PATH"),
        epochs: int = typer.Option(10, "--epochs", help="training epochs per arch"),
        seed: int = typer.Option(0, "--seed", help="seed of the weights and the data order"),
        batch_size: int = typer.Option(64, "--batch-size", help="images per step"),
        lr: float = typer.Option(0.05, "--lr", help="peak SGD learning rate (cosine schedule)"),
        train_limit: Optional[int] = typer.Option(None, "--train-limit", help="train on this many images (seeded subset)"),
        val_limit: Optional[int] = typer.Option(None, "--val-limit", help="measure on this many val images"),
        device: str = typer.Option("auto", "--device", help="auto, cpu or cuda"),
        threads: Optional[int] = typer.Option(None, "--threads", help="torch CPU threads (default: all cores)"),
        as_json: bool = typer.Option(False, "--json", help="one JSON line per arch"),
    ) -> None:
        """Train each arch from scratch and report its val accuracy."""
        from hwnas.accuracy import get_evaluator

        _threads(threads)
        sp = _space(space, space_settings)
        archs = read_archs(arch, sp)
        ev = get_evaluator(f"train:{epochs}", sp, data=data, seed=seed, batch_size=batch_size, lr=lr, device=device,
                           train_limit=train_limit, val_limit=val_limit, progress=not as_json)
        rows = []
        for a in archs:  # print as each finishes: stand-alone training is slow
            rows.append({"id": a.id, "accuracy": ev.evaluate([a])[0]})
            if as_json:
                _print_results(rows[-1:], True, "")
        if not as_json:
            _print_results(rows, False, f"trained {epochs} epochs on {data}")

    predictor = typer.Typer(help="Accuracy predictors: few-shot trees on zero-cost proxies, or an MLP on supernet accuracies.",
                            no_args_is_help=True)
    app.add_typer(predictor, name="predictor")

    @predictor.command("fit")
    def predictor_fit_cmd(
        out_path: Path = typer.Option(..., "--out", help="predictor file to write (use it as --evaluator predictor:FILE)"),
        truth: Optional[str] = typer.Option(None, "--truth", help="where the N known accuracies come from: "
                                            "table:CSV#COL, train:E or supernet:CKPT"),
        supernet: Optional[Path] = typer.Option(None, "--supernet", help="shorthand for --truth supernet:CKPT --kind mlp"),
        kind: Optional[str] = typer.Option(None, "--kind", help="fewshot (trees on proxies; default with --truth) "
                                           "or mlp (OFA-style MLP on the genome; default with --supernet)"),
        space: Optional[str] = typer.Option(None, "--space", help="search space; default: the checkpoint's with supernet:"),
        space_settings: Optional[str] = typer.Option(None, "--space-settings", help="JSON object overriding the space's config"),
        n: int = typer.Option(100, "--n", help="archs with known accuracy to fit on"),
        proxies: Optional[str] = typer.Option(None, "--proxies", help="fewshot: comma-separated proxies "
                                              "(default: all of hwnas list proxies)"),
        features: str = typer.Option("proxies", "--features", help="fewshot inputs: proxies, genome (the space's "
                                     "genome_features) or both"),
        data: str = typer.Option("digits", "--data", help="fewshot: dataset whose images the proxies see (and train: trains on)"),
        holdout: int = typer.Option(200, "--holdout", help="fewshot with a table truth: archs outside the N to report held-out tau on"),
        seed: int = typer.Option(0, "--seed", help="seed of the sample, the proxies' batch and weights, and the fit"),
        epochs: int = typer.Option(500, "--epochs", help="mlp: training epochs"),
        force: bool = typer.Option(False, "--force", help="overwrite an existing --out"),
        threads: Optional[int] = typer.Option(None, "--threads", help="torch CPU threads (default: all cores)"),
        as_json: bool = typer.Option(False, "--json", help="print the fit report as one JSON line"),
        no_progress: bool = typer.Option(False, "--no-progress", help="no progress bar"),
    ) -> None:
        """Fit an accuracy predictor on N archs of known accuracy and report its held-out Kendall tau."""
        from dataclasses import asdict

        from hwnas.accuracy import get_evaluator
        from hwnas.fileio import check_output_path

        _threads(threads)
        if supernet is not None:
            if truth is not None:
                raise UserError("give --truth or its shorthand --supernet, not both")
            truth = f"supernet:{supernet}"
        if truth is None:
            raise UserError("say where the known accuracies come from: --truth table:CSV#COL|train:E|supernet:CKPT")
        kind = kind or ("mlp" if supernet is not None else "fewshot")
        if kind not in ("fewshot", "mlp"):
            raise UserError(f"--kind must be fewshot or mlp, got {kind!r}")
        check_output_path(out_path, force=force, what="predictor")
        sp = _evaluator_space(truth, space, space_settings)
        if kind == "mlp":
            from hwnas.accuracy.predictor import fit_predictor

            ev = get_evaluator(truth, sp)
            pred, report, _ = fit_predictor(sp, ev, n, seed=seed, epochs=epochs)
            pred.save(out_path)
            if as_json:
                out.print(json.dumps({"kind": "mlp", **asdict(report)}), markup=False)
            else:
                out.print(f"wrote {out_path}: held-out Kendall tau {report.kendall_tau:.3f}, Spearman {report.spearman:.3f}, "
                          f"RMSE {100 * report.rmse:.2f} points ({report.n_train} train / {report.n_test} held out)")
            return
        from hwnas.accuracy.fewshot import DEFAULT_PROXIES, FewShotPredictor, check_features, fit_fewshot
        from hwnas.accuracy.progress import progress_bar

        names = tuple(p.strip() for p in proxies.split(",") if p.strip()) if proxies else DEFAULT_PROXIES
        check_features(features)
        FewShotPredictor(sp, names, features)  # unknown proxies fail before any data is read
        options = {"data": data, "seed": seed} if truth.startswith("train:") else {}
        ev = get_evaluator(truth, sp, **options)
        with progress_bar(not no_progress) as bar:
            task = bar.add_task("predictor fit", total=None, info="")
            pred, report, _ = fit_fewshot(sp, ev, n, names, features, data=data, seed=seed, holdout=holdout,
                                          on_arch=lambda done, total: bar.update(task, completed=done, total=total, info=""))
        pred.save(out_path)
        if as_json:
            out.print(json.dumps({"kind": "fewshot", **asdict(report)}), markup=False)
            return
        held = (f"; held-out Kendall tau {report.holdout_kendall_tau:.3f}, Spearman {report.holdout_spearman:.3f} "
                f"on {report.n_holdout} other archs") if report.n_holdout else ""
        out.print(f"wrote {out_path}: out-of-fold Kendall tau {report.cv_kendall_tau:.3f} over the {report.n_train} "
                  f"fitted archs{held}", markup=False)
