"""Issue 17's CIFAR-10 figure in one script: found networks at two budgets against every baseline.

The whole pipeline, each stage kept in ``--out`` and skipped or resumed when the script runs
again (with the settings it started with, kept in ``--out``): a supernet trained on CIFAR-10 (``hwnas train-supernet``), one evolution search per
latency budget on it (``hwnas search``), then ``hwnas compare`` of the two found networks
against every baseline with one recipe, every network timed on the profile's backend. One seed
for every network, and a second for every found network and baseline whose top-1 are within one
point of each other (``--close-seeds``). ``--search-evaluator zc:synflow`` (or any evaluator
spec) scores the searches without a supernet, which is a quarter of the CPU preset's time.

``--probe`` first measures what each part costs on this machine: the training throughput of
every network (images/s, a few steps after the first), the supernet's step, one supernet
evaluation, and one latency measurement per network, and prints what the configuration would
take. ``--probe-only`` stops there (how the CPU estimate in BENCHMARKS.md was made).
``--wall-budget-s S`` (default 450 with ``--device cuda``) sizes the job from the probe: the
searches' evaluations are cut to fit a quarter of the budget, and the supernet's and the
comparison's epochs (one number, at most the preset's) to fit the rest.

    python benchmarks/compare_cifar10.py --out cmp-c10 --probe-only --json benchmarks/results/compare_cifar10_probe_cpu.json
    python benchmarks/compare_cifar10.py --out cmp-c10                       # the CPU preset: many hours
    python benchmarks/compare_cifar10.py --device cuda --out cmp-c10-gpu     # sized to ~450 s on one GPU
    python benchmarks/compare_cifar10.py --out cmp-c10 --budgets 0.45,1.4 --search-evaluator zc:synflow --threads 2
    python benchmarks/compare_cifar10.py --out cmp-c10 --budgets 0.45,1.4 --report-only   # the rows so far
    # a new folder (another machine, say) going on from the committed rows; every row timed here at the end
    python benchmarks/compare_cifar10.py --out cmp-c10 --budgets 0.45,1.4 --search-evaluator zc:synflow --threads 2 \
        --restore-rows benchmarks/results/compare_cifar10_cpu_partial.json --retime

Profile the machine first (``hwnas profile --space mbv3-32 --backend ort-cpu --threads 1``) and
pass ``--profile`` to compare on it; the default is the shipped reference table.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

SPACE = "mbv3-32"
CPU = {"train_limit": 20000, "val_limit": 2000, "epochs": 10, "supernet_epochs": 30, "search_evals": 300, "seeds": 1,
       "close_seeds": 2, "batch_size": 64, "lr": 0.05, "threads": None, "search_evaluator": "supernet"}
# one GPU: all 45,000 training images; the epochs are what --wall-budget-s allows, up to these
GPU = {"train_limit": None, "val_limit": None, "epochs": 30, "supernet_epochs": 30, "search_evals": 300, "seeds": 1,
       "close_seeds": 2, "batch_size": 128, "lr": 0.1, "threads": None, "search_evaluator": "supernet"}
PROBE_STEPS = 3  # timed steps per network, after one untimed step (allocation, first-call work)


def found_proxies(space, table, budgets: list[float], seed: int = 0) -> list:
    """For the probe: a random arch just under each budget on the table (what the search will find
    is not known yet; its cost is about that of an arch at the budget)."""
    from hwnas.latency import LatencyPredictor

    pred = LatencyPredictor(table, space)
    rng = random.Random(seed)
    archs = [space.sample(rng) for _ in range(400)]
    lat = [pred.predict(a) for a in archs]
    out = []
    for b in budgets:
        under = [(ms, a) for ms, a in zip(lat, archs) if ms <= b]
        out.append(max(under, key=lambda t: t[0])[1] if under else min(zip(lat, archs), key=lambda t: t[0])[1])
    return out


def inference_throughput(model, input_shape, device: str, threads: int | None, n: int = 500) -> float:
    """Images per second of the test split's pass (batches of 500, as the shared loop scores)."""
    import torch

    from hwnas.accuracy.runtime import resolve_device
    from hwnas.accuracy.training import use_threads

    dev = resolve_device(device)
    x = torch.randn(n, *input_shape, device=dev).contiguous(memory_format=torch.channels_last)
    with use_threads(threads), torch.inference_mode():
        model.eval()
        model(x[:50])
        if dev.type == "cuda":
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        model(x)
        if dev.type == "cuda":
            torch.cuda.synchronize()
        return n / max(time.perf_counter() - t0, 1e-9)


def search_options(opts: dict, device: str) -> dict:
    """The search evaluator's options: a supernet runs on the training device; any other
    evaluator (a zero-cost proxy, say) scores on CIFAR-10 images."""
    return {"device": device} if opts["search_evaluator"] == "supernet" else {"data": "cifar10"}


def probe(args, opts, budgets, ds, table) -> dict:
    """Seconds per image of training each network, of the supernet's step, per supernet
    evaluation, and per latency measurement (ONNX export and timing on the profile's backend)."""
    import tempfile

    import torch

    from hwnas.accuracy import get_evaluator
    from hwnas.accuracy.supernet.train import SupernetTrainConfig, train_supernet
    from hwnas.accuracy.training import TrainRecipe, train_classifier
    from hwnas.compare.bench import Bench
    from hwnas.compare.contenders import baseline_contenders, found_archs
    from hwnas.space import get_space

    space = get_space(SPACE)
    image_size = space.input_shape[-1]
    bench = Bench(table, space.input_shape)
    contenders = baseline_contenders(args.baselines, image_size)
    contenders += found_archs(found_proxies(space, table, budgets), space)
    bs = opts["batch_size"]
    rows = []
    for c in contenders:
        times = []
        for steps in (1, 1 + PROBE_STEPS):
            torch.manual_seed(0)
            model = c.build(ds.num_classes)
            recipe = TrainRecipe(epochs=1, batch_size=bs, lr=opts["lr"], device=args.device, threads=opts["threads"],
                                 max_steps=steps)
            times.append(train_classifier(model, ds, recipe).seconds)
        ips = PROBE_STEPS * bs / max(times[1] - times[0], 1e-9)
        infer_ips = inference_throughput(model, space.input_shape, args.device, opts["threads"])
        model = model.to("cpu").to(memory_format=torch.contiguous_format).eval()
        t0 = time.perf_counter()
        bench.latency(model, bench.onnx(model, c.name), c.name)
        measure_s = time.perf_counter() - t0
        rows.append({"name": c.name, "kind": c.kind, "train_img_per_s": ips, "test_img_per_s": infer_ips,
                     "measure_s": measure_s})
        print(f"probe {c.name:24s} {ips:9.1f} img/s training {infer_ips:9.1f} img/s testing   {measure_s:5.1f} s to "
              "export and time", flush=True)
    if opts["search_evaluator"] != "supernet":  # the search scores with another evaluator: no supernet
        ev = get_evaluator(opts["search_evaluator"], space, **search_options(opts, args.device))
        rng = random.Random(1)
        ev.evaluate([space.sample(rng)])
        t0 = time.perf_counter()
        ev.evaluate([space.sample(rng)])
        eval_s = time.perf_counter() - t0
        print(f"probe {opts['search_evaluator']:24s} {eval_s:5.2f} s per evaluation in the search", flush=True)
        return {"networks": rows, "supernet_img_per_s": None, "eval_s": eval_s, "batch_size": bs}
    with tempfile.TemporaryDirectory() as tmp:
        times = []
        for steps in (1, 1 + PROBE_STEPS):
            cfg = SupernetTrainConfig(data="cifar10", epochs=1, batch_size=bs, lr=opts["lr"], device=args.device,
                                      threads=opts["threads"], train_limit=opts["train_limit"],
                                      val_limit=opts["val_limit"], max_steps=steps)
            t0 = time.perf_counter()
            train_supernet(space, cfg, Path(tmp) / "sn.pt", force=True, progress=False, dataset=ds)
            times.append(time.perf_counter() - t0)
        sn_ips = PROBE_STEPS * bs / max(times[1] - times[0], 1e-9)
        ev = get_evaluator(f"supernet:{Path(tmp) / 'sn.pt'}", space, device=args.device, cache=False)
        rng = random.Random(1)
        ev.evaluate([space.sample(rng)])  # the first evaluation carries one-time work
        t0 = time.perf_counter()
        ev.evaluate([space.sample(rng)])
        eval_s = time.perf_counter() - t0
    print(f"probe supernet                {sn_ips:9.1f} img/s training (sandwich: 4 subnets a step)   "
          f"{eval_s:5.2f} s per evaluation in the search", flush=True)
    return {"networks": rows, "supernet_img_per_s": sn_ips, "eval_s": eval_s, "batch_size": bs}


def estimate(p: dict, n_train: int, n_test: int, epochs: int, supernet_epochs: int, evals: int, seeds: int,
             n_budgets: int) -> dict:
    """Seconds each stage takes at these settings, from the probe."""
    nets = p["networks"]
    sn = p.get("supernet_img_per_s")
    return {"supernet_s": n_train * supernet_epochs / sn if sn else 0.0, "search_s": n_budgets * evals * p["eval_s"],
            "compare_train_s": seeds * sum(n_train * epochs / r["train_img_per_s"] for r in nets),
            "compare_test_s": seeds * sum(n_test / r["test_img_per_s"] for r in nets),
            "compare_measure_s": seeds * sum(r["measure_s"] for r in nets)}


def fit(p: dict, opts: dict, n_train: int, n_test: int, n_budgets: int, wall: float) -> dict:
    """The search's evaluations within a quarter of ``wall``, then one number of epochs for the
    supernet and the comparison (at most the preset's) within the rest."""
    evals = max(30, min(opts["search_evals"], int(0.25 * wall / (n_budgets * p["eval_s"]))))
    seeds = max(opts["seeds"], opts.get("close_seeds") or 0)  # at worst every network is in a close pair
    per_epoch = estimate(p, n_train, n_test, 1, 1, 0, seeds, n_budgets)
    fixed = n_budgets * evals * p["eval_s"] + per_epoch["compare_measure_s"] + per_epoch["compare_test_s"]
    epochs = int((wall - fixed) // (per_epoch["supernet_s"] + per_epoch["compare_train_s"]))
    epochs = max(1, min(opts["epochs"], epochs))
    return {**opts, "search_evals": evals, "epochs": epochs, "supernet_epochs": min(opts["supernet_epochs"], epochs)}


def report_so_far(out: Path, opts: dict, budgets: list[float], json_path: str | None, profile: str,
                  retime: bool = False) -> None:
    """The finished rows of the comparison in ``out`` (a job still running, or cut short), as a
    table with each baseline's standing against the found networks; nothing is trained. Rows
    timed on several machines are set against each other only with ``retime`` (all timed here)."""
    from hwnas.compare.contenders import baseline_contenders, found_from_run
    from hwnas.compare.report import baseline_standing, markdown, mean_rows, standing_summary
    from hwnas.compare.run import JOURNAL_FILE, machine_label, retime_rows
    from hwnas.fileio import read_journal

    path = out / "compare" / JOURNAL_FILE
    if not path.is_file():
        raise SystemExit(f"no comparison has started in {out}: it holds no compare/{JOURNAL_FILE}")
    records = read_journal(path)[0]
    kept = [{k: v for k, v in r["row"].items() if k != "key"} for r in records[1:] if "row" in r]
    if retime and kept:
        found = [c for b in budgets if (out / f"search-{b:g}ms").is_dir()
                 for c in found_from_run(str(out / f"search-{b:g}ms"), SPACE, 32, "cifar10")[0]]
        contenders = baseline_contenders(sorted({r["name"] for r in kept if r["kind"] == "baseline"}), 32) + found
        retime_rows(kept, contenders, profile, "cifar10", train_limit=opts["train_limit"], progress=True)
    rows = [{k: v for k, v in r.items() if k != "per_class_f1"} for r in kept]
    machines = sorted({machine_label(r["timed_on"]) if r.get("timed_on") else "a machine not recorded" for r in rows})
    notes = [f"{len(rows)} finished row(s) so far; timed on {', '.join(machines)}"
             + (", every row again in one sitting" if retime else "")]
    mixed = len(machines) > 1
    standing = baseline_standing(mean_rows(rows)) if any(r["kind"] == "found" for r in rows) and not mixed else []
    if mixed:
        notes.append("rows timed on different machines are not set against each other: --retime times every row here")
    elif standing:
        notes.append(standing_summary(standing))
    print(markdown(rows, f"CIFAR-10 comparison in {out} (so far)", notes, standing=standing))
    if json_path:
        Path(json_path).parent.mkdir(parents=True, exist_ok=True)
        Path(json_path).write_text(json.dumps({"partial": True, "budgets_ms": budgets, "settings": opts,
                                               "retimed": bool(retime), "rows": kept, "baselines": standing}, indent=1))


def restored_rows(path: str, opts: dict) -> list[dict]:
    """The rows of a --report-only --json file, which must come from a job with these settings."""
    saved = json.loads(Path(path).read_text())
    theirs = saved.get("settings", {})
    diffs = [f"{k}: {theirs.get(k)!r} there, {v!r} here" for k, v in opts.items() if theirs.get(k) != v]
    if diffs:
        raise SystemExit(f"{path} comes from a job with other settings ({'; '.join(diffs[:3])}); "
                         f"restore it into a folder started with its settings")
    return list(saved.get("rows", []))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", required=True, help="folder for the supernet, the runs and the comparison")
    ap.add_argument("--device", default="cpu", help="cpu or cuda (training; latency is always the profile's backend)")
    ap.add_argument("--profile", default=str(ROOT / "profiles" / "mbv3-32_ort-cpu_t1_b1_epyc-zen4.json"))
    ap.add_argument("--budgets", default="0.6,1.5", help="latency budgets (ms, the profile's units) to search at")
    ap.add_argument("--baselines", default="all")
    ap.add_argument("--train-limit", type=int, help="training images (preset: 20,000 on a CPU, all on a GPU)")
    ap.add_argument("--epochs", type=int, help="the comparison's epochs (preset: 10 on a CPU, up to 30 on a GPU)")
    ap.add_argument("--supernet-epochs", type=int)
    ap.add_argument("--search-evals", type=int)
    ap.add_argument("--seeds", type=int, help="seeds for every network (preset 1)")
    ap.add_argument("--close-seeds", type=int, help="seeds for every found network and baseline within one top-1 point "
                    "of each other (preset 2; 0: none)")
    ap.add_argument("--search-evaluator", help="what the searches score with: supernet (the preset: train one on CIFAR-10 "
                    "first) or an evaluator spec such as zc:synflow (no supernet)")
    ap.add_argument("--val-limit", type=int, help="validation images the search scores on (preset: 2,000 on a CPU, all on a GPU)")
    ap.add_argument("--threads", type=int, help="CPU threads for training (default: the machine's cores)")
    ap.add_argument("--probe", action="store_true", help="measure each part's cost first and print the estimate")
    ap.add_argument("--probe-only", action="store_true", help="--probe, then stop")
    ap.add_argument("--wall-budget-s", type=float, help="size the job to this many seconds from the probe "
                    "(default 450 with --device cuda; 0: the preset as it is)")
    ap.add_argument("--json", help="write the probe, the settings and the comparison's rows here")
    ap.add_argument("--restore-rows", help="rows finished in an earlier folder (a --report-only --json file with the "
                    "same settings): the comparison keeps them and trains the rest")
    ap.add_argument("--retime", action="store_true", help="time every row again on this machine, in one sitting, "
                    "after the training (for rows timed on another machine)")
    ap.add_argument("--report-only", action="store_true", help="train nothing: print (and with --json write) the rows "
                    "finished so far in --out, with each baseline's standing against the found networks")
    args = ap.parse_args()

    from hwnas.compare import compare
    from hwnas.compare.contenders import load_profile
    from hwnas.compare.run import JOURNAL_FILE
    from hwnas.compare.zoo import list_baselines
    from hwnas.data import load_dataset
    from hwnas.search import run
    from hwnas.space import get_space

    gpu = args.device.startswith("cuda")
    opts = dict(GPU if gpu else CPU)
    for key in ("train_limit", "val_limit", "epochs", "supernet_epochs", "search_evals", "seeds", "close_seeds",
                "threads", "search_evaluator"):
        if getattr(args, key) is not None:
            opts[key] = getattr(args, key)
    args.baselines = list_baselines() if args.baselines == "all" else [b.strip() for b in args.baselines.split(",")]
    budgets = [float(b) for b in args.budgets.split(",")]
    wall = args.wall_budget_s if args.wall_budget_s is not None else (450.0 if gpu else None)
    wall = wall or None
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    saved = out / "settings.json"  # a job run again goes on with the settings it started with
    if saved.is_file() and not args.probe_only:
        opts, wall = {"search_evaluator": "supernet", "close_seeds": None, **json.loads(saved.read_text())}, None
        print(f"going on with the settings in {saved} (delete it to size the job again): {opts}", flush=True)
    if args.report_only:
        report_so_far(out, opts, budgets, args.json, args.profile, args.retime)
        return
    table, _ = load_profile(args.profile)
    space = get_space(SPACE)
    ds = load_dataset("cifar10", image_size=space.input_shape[-1], train_limit=opts["train_limit"],
                      val_limit=opts["val_limit"])
    n_train, n_test = len(ds.train_y), len(ds.test_y)
    report = {"device": args.device, "profile": Path(args.profile).name, "budgets_ms": budgets, "preset": dict(opts),
              "train_images": n_train, "test_images": n_test, "wall_budget_s": wall}
    t_probe = time.perf_counter()
    if args.probe or args.probe_only or wall is not None:
        p = probe(args, opts, budgets, ds, table)
        report["probe"] = p
        report["probe_s"] = time.perf_counter() - t_probe
        est = estimate(p, n_train, n_test, opts["epochs"], opts["supernet_epochs"], opts["search_evals"], opts["seeds"], len(budgets))
        report["estimate_preset_s"] = est
        sn = f"{opts['supernet_epochs']} supernet epochs" if opts["search_evaluator"] == "supernet" else \
            f"no supernet ({opts['search_evaluator']})"
        print(f"the preset ({n_train} images, {sn}, {opts['search_evals']} evaluations "
              f"x {len(budgets)} budgets, {opts['epochs']} epochs x {opts['seeds']} seed(s) for {len(p['networks'])} "
              f"networks, more for close pairs): "
              + ", ".join(f"{k} {v / 3600:.2f} h" for k, v in est.items()) + f"; in all {sum(est.values()) / 3600:.1f} h",
              flush=True)
        if wall is not None:
            opts = fit(p, opts, n_train, n_test, len(budgets), wall - report["probe_s"])
            est = estimate(p, n_train, n_test, opts["epochs"], opts["supernet_epochs"], opts["search_evals"], opts["seeds"], len(budgets))
            report["estimate_fitted_s"] = est
            print(f"fitted to {wall:.0f} s ({report['probe_s']:.0f} s of it probing): {opts['supernet_epochs']} supernet "
                  f"epochs, {opts['search_evals']} evaluations per budget, {opts['epochs']} epochs; estimated "
                  f"{sum(est.values()):.0f} s", flush=True)
    report["settings"] = dict(opts)
    if not args.probe_only:
        saved.write_text(json.dumps(opts))

    def write() -> None:
        if args.json:
            Path(args.json).parent.mkdir(parents=True, exist_ok=True)
            Path(args.json).write_text(json.dumps(report, indent=1))

    write()
    if args.probe_only:
        return

    from hwnas.accuracy.supernet.train import SupernetTrainConfig, train_supernet

    stages = {}
    evaluator = opts["search_evaluator"]
    if evaluator == "supernet":
        t0 = time.perf_counter()
        ckpt = out / "supernet.pt"
        cfg = SupernetTrainConfig(data="cifar10", epochs=opts["supernet_epochs"], batch_size=opts["batch_size"],
                                  lr=opts["lr"], device=args.device, threads=opts["threads"],
                                  train_limit=opts["train_limit"], val_limit=opts["val_limit"])
        train_supernet(space, cfg, ckpt, resume=ckpt.exists(), progress=True, dataset=ds)
        stages["supernet_s"] = time.perf_counter() - t0
        evaluator = f"supernet:{ckpt}"
    runs = []
    for b in budgets:
        t0 = time.perf_counter()
        folder = out / f"search-{b:g}ms"
        run(space=SPACE, profile=args.profile, evaluator=evaluator, strategy="evolution",
            budget_evals=opts["search_evals"], seed=0, latency_budget_ms=b,
            evaluator_options=search_options(opts, args.device),
            out=folder, resume=(folder / "journal.jsonl").exists())
        runs.append(str(folder))
        stages[f"search_{b:g}ms_s"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    cmp_dir = out / "compare"
    res = compare(profile=args.profile, data="cifar10", epochs=opts["epochs"], baselines=args.baselines, runs=runs,
                  seeds=opts["seeds"], close_seeds=opts["close_seeds"] or None, train_limit=opts["train_limit"],
                  threads=opts["threads"],
                  batch_size=opts["batch_size"], lr=opts["lr"], device=args.device, out=cmp_dir,
                  resume=(cmp_dir / JOURNAL_FILE).is_file(), progress=True, retime=args.retime,
                  prior_rows=restored_rows(args.restore_rows, opts) if args.restore_rows else ())
    stages["compare_s"] = time.perf_counter() - t0
    report["stages_s"] = stages
    report["rows"] = [{k: v for k, v in r.items() if k != "per_class_f1"} for r in res.rows]
    report["verdicts"] = res.verdicts
    report["baselines"] = res.standing
    write()
    print((cmp_dir / "compare.md").read_text())
    for v in res.verdicts:
        print(v)


if __name__ == "__main__":
    main()
