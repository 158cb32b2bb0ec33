"""A one-shot search into a run folder: the supernet and the architecture trained together.

Each step takes the gradient of the architecture loss (cross-entropy on a batch of one half of
the training split, plus the latency penalty when there is a budget) with respect to the
architecture logits, and that of the weights' loss (a batch of the other half) with respect to
the network weights, both at the same point, and applies them together (DARTS' first-order
update, GDAS' likewise). At
the end of every epoch the most probable arch (the argmax of every decision) is evaluated and
appended to the journal, then the epoch checkpoint is written atomically; the final arch, repaired
into the latency budget where the argmax misses it (the most probable arch within the budget,
by the search's own latency model), is evaluated and journaled last and is the run's best. With
``derive_samples`` K, the final arch is instead the supernet's best of that arch and K distinct
archs within the budget drawn from the learned distribution (FBNet's derivation, ranked on the
shared weights rather than trained from scratch), each journaled as a "sample".

The space's one-shot form (``hwnas.search.oneshot.forms``: nb201's mixed cells, or the MBConv
supernet of ``mbconv_mixed``) supplies the network, the sampling and the expected latency.

The run folder is a search run folder like any other (``config.json``, ``journal.jsonl``,
``pareto.json``, ``best.json``, ``pareto.png``), plus ``oneshot.ckpt``; an MBConv run also writes
``supernet.pt``, the trained supernet as ``hwnas train-supernet`` writes one, and records it as
the evaluator so that ``hwnas export`` extracts the found arch's weights. Every step's randomness
is a function of (seed, epoch, step), so a run resumed from its checkpoint (written every epoch
and on Ctrl-C) computes what the uninterrupted run computes and ends on the same arch.
"""

from __future__ import annotations

import copy
import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Optional

from hwnas.errors import UserError
from hwnas.fileio import Journal, atomic_write_bytes, atomic_write_json
from hwnas.search.oneshot.checkpoint import CHECKPOINT_FILE, load_for_resume, save_checkpoint
from hwnas.search.oneshot.methods import OneShotOptions, check_mixed_form
from hwnas.search.runner import (
    BEST_FILE, CONFIG_FILE, FORMAT_VERSION, JOURNAL_FILE, PARETO_FILE, PLOT_FILE, SearchConfig, SearchResult,
    _front, _prepare_out, _summary, shared_csv_table, space_label,
)
from hwnas.space.ref import SpaceRef

# the supernet's own estimate of an arch: its val accuracy with the shared weights on that cell
SUPERNET_ESTIMATE = "oneshot"


@dataclass(frozen=True)
class OneShotProgress:
    epoch: int  # epochs finished
    epochs: int
    step: int  # steps finished in all
    total_steps: int
    loss: Optional[float]  # mean weight-step loss of the last finished epoch
    expected_ms: Optional[float]  # E[lat] under the current probabilities
    argmax: Optional[dict]  # the last journaled record


class _Setup:
    """Everything of one configuration that can be refused, built before anything is written."""

    def __init__(self, cfg: SearchConfig) -> None:
        from hwnas.data import load_dataset
        from hwnas.latency.sources import get_latency_model
        from hwnas.search.objectives import CostModel
        from hwnas.search.paths import resolve_evaluator_spec, resolve_profile_spec
        from hwnas.space import get_space

        self.cfg = cfg
        self.opts = OneShotOptions.from_dict(cfg.strategy, dict(cfg.strategy_options))
        if cfg.params_max is not None or cfg.flops_max is not None:
            raise UserError(f"strategy {cfg.strategy!r} takes a latency budget only (--latency-ms); drop --params-max/--flops-max")
        if cfg.latency_budget_ms is not None and not (cfg.latency_budget_ms > 0 and cfg.latency_budget_ms != float("inf")):
            raise UserError(f"--latency-ms must be a positive number, got {cfg.latency_budget_ms}")
        if tuple(cfg.objectives) != ("accuracy", "latency_ms"):
            raise UserError(f"strategy {cfg.strategy!r} reports accuracy and latency_ms; drop --objectives")
        self.space = get_space(cfg.space, **cfg.space_settings)
        check_mixed_form(cfg.strategy, self.space)
        self.profile_spec = resolve_profile_spec(cfg.profile)
        shared = shared_csv_table(cfg, self.space)
        self.latency = get_latency_model(self.profile_spec, self.space, table=shared)
        from hwnas.search.oneshot.forms import mixed_form

        self.form = mixed_form(self.space, self.latency)
        if cfg.latency_budget_ms is not None:
            ms, arch = self.form.min_latency()
            if cfg.latency_budget_ms < ms:
                raise UserError(f"--latency-ms {cfg.latency_budget_ms:g} is below the smallest latency the space reaches on this profile, "
                                f"{ms:.4g} ms (arch {arch.id}); raise the budget")
        self.evaluator = None
        self.evaluator_spec = resolve_evaluator_spec(cfg.evaluator) if cfg.evaluator else ""
        if cfg.evaluator and cfg.evaluator != SUPERNET_ESTIMATE:
            from hwnas.accuracy import get_evaluator

            options = {"table": shared} if shared is not None and cfg.evaluator.startswith("table:") else {}
            self.evaluator = get_evaluator(self.evaluator_spec, self.space, **options)
        o = self.opts
        self.ds = load_dataset(o.data, image_size=self.space.input_shape[-1], train_limit=o.train_limit, val_limit=o.val_limit)
        if len(self.ds.train_y) < 2 * o.batch_size:
            raise UserError(f"{o.data} has {len(self.ds.train_y)} training images, fewer than two batches of {o.batch_size} "
                            f"(half train the weights, half the architecture); lower --batch-size or raise --train-limit")
        self.costs = CostModel(self.space)

    def describe(self, out: Optional[Path] = None) -> dict[str, Any]:
        cfg = self.cfg
        if self.evaluator is not None:
            evaluator = {**self.evaluator.describe(), "typed": cfg.evaluator}
        elif out is not None and self.form.save_supernet is not None:
            from hwnas.search.oneshot.mbconv_mixed import SUPERNET_FILE

            # export reads the supernet the run writes; "typed" finds it beside a moved run folder
            evaluator = {"spec": f"supernet:{(out / SUPERNET_FILE).resolve()}", "typed": f"supernet:{SUPERNET_FILE}",
                         "what": "val accuracy of the arch's path in the trained supernet (BatchNorm recalibrated)"}
        else:
            evaluator = {"spec": SUPERNET_ESTIMATE, "typed": cfg.evaluator,
                         "what": "val accuracy of the arch's path in the trained supernet (BatchNorm recalibrated)"}
        # export trains the found arch on this data where the run leaves no supernet checkpoint
        evaluator["data"] = self.opts.data
        return {
            "format": FORMAT_VERSION,
            "space": SpaceRef.of(self.space, cfg.space_settings).run_record(),
            "profile": {**self.latency.describe(), "typed": cfg.profile},
            "evaluator": evaluator,
            "strategy": {"name": cfg.strategy, "kind": "oneshot", **self.opts.identity()},
            "data": self.ds.describe(),
            "seed": cfg.seed,
            "budgets": {"latency_budget_ms": cfg.latency_budget_ms, "params_max": None, "flops_max": None},
            "objectives": list(cfg.objectives),
        }

    def record(self, i: int, genome: tuple[int, ...], model: Any, kind: str, epoch: int, extra: dict,
               evaluate: bool = True, est: Optional[float] = None) -> dict:
        """An arch's journal record; ``evaluate=False`` leaves the evaluator out (the accuracy is
        the supernet's estimate: the derivation's samples, which only the supernet ranks); ``est``
        is the supernet's estimate where it is known already (the chosen sample's)."""
        arch = self.space.decode(list(genome))
        lat = float(self.latency.predict_many([arch])[0])
        est = self.supernet_accuracy(model, genome) if est is None else est
        acc = float(self.evaluator.evaluate([arch])[0]) if self.evaluator is not None and evaluate else est
        cost = self.costs(arch)
        budget = self.cfg.latency_budget_ms
        return {"i": i, "id": arch.id, "arch": arch.to_dict(), "genome": list(genome), "accuracy": acc,
                "latency_ms": lat, "params": cost.params, "flops": cost.flops, "model_bytes": cost.model_bytes,
                "kind": kind, "epoch": epoch, "supernet_accuracy": est,
                "within_budget": budget is None or lat <= budget, **extra}

    def supernet_accuracy(self, model: Any, genome: tuple[int, ...]) -> float:
        """The arch's path through a copy of the supernet, BatchNorm statistics re-estimated on
        fixed training images, scored on val (the copy leaves the training state untouched)."""
        import torch

        from hwnas.accuracy.supernet.subnet_eval import accuracy, recalibrate_bn

        device = next(model.parameters()).device
        path = self.form.fixed_path(copy.deepcopy(model), genome).to(device)
        with torch.no_grad():
            recalibrate_bn(path, self.ds, device=device)
            return float(accuracy(path, self.ds, "val", device=device))


# ---- the run ------------------------------------------------------------------------------
def run_oneshot(config: SearchConfig, out: str | Path | None = None, resume: bool = False, force: bool = False,
                progress: Callable[[OneShotProgress], None] | None = None,
                stop_after_steps: int | None = None) -> SearchResult:
    """Run (or resume) a one-shot search (see the module docstring); ``stop_after_steps``
    raises KeyboardInterrupt after that many training steps (tests of Ctrl-C)."""
    out_path = Path(out) if out is not None else None
    if out_path is not None:
        _prepare_out(out_path, resume, force)
    setup = _Setup(config)  # every input error surfaces here, before anything is written
    described = setup.describe(out_path)
    state, replay, notes = None, [], []
    if out_path is not None and resume:
        state, replay, notes = load_for_resume(out_path, described)
    elif out_path is not None:
        from hwnas.search.runner import RUN_FILES

        out_path.mkdir(parents=True, exist_ok=True)
        from hwnas.search.oneshot.mbconv_mixed import SUPERNET_FILE

        for name in (*RUN_FILES, CHECKPOINT_FILE, SUPERNET_FILE):
            (out_path / name).unlink(missing_ok=True)
        atomic_write_json(out_path / CONFIG_FILE, described)
    journal = Journal(out_path / JOURNAL_FILE) if out_path is not None else None
    try:
        records = _train(setup, out_path, journal, state, replay, progress, stop_after_steps)
    finally:
        if journal is not None:
            journal.close()
    final = records[-1]
    # each arch once (its latest record: the final one where it is final), those within the budget;
    # with an evaluator, the derivation's samples (scored by the supernet alone) are not comparable
    latest = {r["id"]: r for r in _comparable(records, setup)}
    front = _front([r for r in latest.values() if r["within_budget"]], _problem(setup))
    result = SearchResult(records, [_summary(r) for r in front], _summary(final), out_path, None, notes, len(replay))
    if out_path is not None:
        _write_outputs(out_path, result, config, setup)
    return result


def _comparable(records: list[dict], setup: _Setup) -> list[dict]:
    """The records whose accuracies are the run's evaluator's: with an evaluator, the derivation's
    samples (scored by the supernet alone) are left out of the front and the plot."""
    return [r for r in records if setup.evaluator is None or r["kind"] != "sample"]


def _problem(setup: _Setup) -> Any:
    from hwnas.search.problem import KNOWN_OBJECTIVES, Problem

    return Problem(cards=setup.form.cards, objectives=tuple(KNOWN_OBJECTIVES[o] for o in setup.cfg.objectives))


def _halves(ds: Any) -> tuple[Any, Any]:
    """The training split cut in two fixed halves: weights learn on one, the architecture on the other."""
    n = len(ds.train_y)
    h = n // 2
    return (dataclasses.replace(ds, train_x=ds.train_x[:h], train_y=ds.train_y[:h]),
            dataclasses.replace(ds, train_x=ds.train_x[h:], train_y=ds.train_y[h:]))


def _tau(opts: OneShotOptions, epoch: int) -> float:
    if opts.epochs == 1:
        return opts.tau_max
    return opts.tau_max - (opts.tau_max - opts.tau_min) * epoch / (opts.epochs - 1)


def _train(setup: _Setup, out: Optional[Path], journal: Optional[Journal], state: Any, replay: list[dict],
           progress: Optional[Callable[[OneShotProgress], None]], stop_after_steps: Optional[int]) -> list[dict]:
    import torch
    import torch.nn.functional as F

    from hwnas.accuracy.runtime import Runtime, resolve_device
    from hwnas.accuracy.training import ResidentImages, TrainRecipe, make_optimizer, prepare_model, train, use_threads
    from hwnas.search.oneshot.latency import with_latency_loss

    cfg, opts, space, form = setup.cfg, setup.opts, setup.space, setup.form
    method, budget = cfg.strategy, cfg.latency_budget_ms
    recipe = TrainRecipe(epochs=opts.epochs, batch_size=opts.batch_size, lr=opts.lr, momentum=0.9,
                         weight_decay=opts.weight_decay, label_smoothing=0.0, seed=cfg.seed, device=opts.device,
                         threads=opts.threads, channels_last=True, compile=False)
    recipe.check()
    rt = Runtime(resolve_device(opts.device))
    records = list(replay)
    with use_threads(recipe.threads):
        torch.manual_seed(cfg.seed)
        model = form.make_net(setup.ds.num_classes)
        alpha = torch.nn.Parameter(1e-3 * torch.randn(len(form.cards), max(form.cards)))
        prepare_model(model, recipe, rt.device)
        alpha.data = alpha.data.to(rt.device)
        opt = make_optimizer(model, recipe)
        arch_opt = torch.optim.Adam([alpha], lr=opts.arch_lr, betas=(0.5, 0.999), weight_decay=opts.arch_weight_decay)
        weights_half, arch_half = _halves(setup.ds)
        data = ResidentImages(weights_half, "train", rt.device, recipe.channels_last)
        arch_data = ResidentImages(arch_half, "train", rt.device, recipe.channels_last)
        steps_per_epoch = data.steps_per_epoch(recipe.batch_size)
        epoch, step0, history = 0, 0, []
        if state is not None:
            meta, tensors = state
            model.load_state_dict(tensors["model"])
            alpha.data.copy_(tensors["alpha"].to(rt.device))
            opt.load_state_dict(tensors["optimizer"])
            arch_opt.load_state_dict(tensors["arch_optimizer"])
            epoch, step0, history = int(meta["epoch"]), int(meta["step"]), list(meta.get("history", []))
        total = opts.epochs * steps_per_epoch
        # the epoch's loss summed here (not by the loop) so that a resumed epoch reports the mean over all its steps
        loss_sum = float(state[0].get("loss_sum", 0.0)) if state is not None else 0.0
        where = {"epoch": epoch, "step": step0, "done": 0, "tau": _tau(opts, epoch), "arch": None,
                 "loss_sum": torch.tensor(loss_sum, device=rt.device), "loss": None}
        weights_params = [p for p in model.parameters()]

        def expected_ms() -> float:
            with torch.no_grad():
                return float(form.expected(form.probs(alpha)))

        from hwnas.accuracy.supernet.checkpoint import cpu_state

        def save(ep: int, st: int, finished: bool = False) -> None:
            if out is None:
                return
            meta = {"epoch": ep, "step": st, "loss_sum": float(where["loss_sum"]) if st else 0.0,
                    "finished": finished, "history": history, "method": method,
                    "space": space.name, "config_hash": space.config_hash()}
            sd = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
            save_checkpoint(out / CHECKPOINT_FILE, meta, {"model": sd, "alpha": alpha.detach().cpu(),
                                                            "optimizer": cpu_state(opt.state_dict()),
                                                            "arch_optimizer": cpu_state(arch_opt.state_dict())})

        def append(rec: dict) -> None:
            records.append(rec)
            if journal is not None:
                journal.append(rec)  # flushed and fsynced before the checkpoint says the epoch is done

        def argmax_record(ep_done: int, extra: dict) -> dict:
            genome = tuple(int(v) for v in form.logits(alpha.detach()).argmax(-1).cpu())
            return setup.record(len(records), genome, model, "argmax", ep_done,
                                {"expected_latency_ms": expected_ms(), "probs": form.prob_rows(alpha), **extra})

        def report(loss: Optional[float]) -> None:
            if progress is not None:
                progress(OneShotProgress(where["epoch"], opts.epochs, where["epoch"] * steps_per_epoch + where["step"],
                                         total, loss, expected_ms(), records[-1] if records else None))

        def on_epoch_start(ep: int, first_step: int) -> None:
            where["epoch"], where["step"], where["tau"] = ep, first_step, _tau(opts, ep)
            if first_step == 0:
                where["loss_sum"] = torch.zeros((), device=rt.device)
            where["arch"] = arch_data.epoch(cfg.seed + 1, ep, recipe.batch_size, first_step)

        def step(x: Any, y: Any, s: int) -> Any:
            # both gradients at this step's weights and logits; applied together after it (in
            # after_backward), so that an interrupt inside the step leaves both untouched
            xa, ya = next(where["arch"])  # drawn in warm-up too, so that the batches do not depend on it
            where["alpha_grad"] = None
            if where["epoch"] >= opts.warmup_epochs:
                w, index = form.sample(alpha, method, where["tau"])
                with rt.autocast():
                    logits = model(xa, w, index)
                arch_loss = F.cross_entropy(logits.float(), ya)
                if budget is not None and opts.latency_lambda > 0:
                    arch_loss = with_latency_loss(arch_loss, form.expected(form.probs(alpha)), budget, opts.latency_form,
                                                  opts.latency_lambda).float()
                (where["alpha_grad"],) = torch.autograd.grad(arch_loss, [alpha])  # leaves the weights' gradients alone
            w, index = form.sample(alpha.detach(), method, where["tau"])
            with rt.autocast():
                logits = model(x, w, index)
            loss = F.cross_entropy(logits.float(), y)
            loss.backward()
            where["loss"] = loss.detach()
            return where["loss"]

        def after_backward() -> None:
            torch.nn.utils.clip_grad_norm_(weights_params, 5.0)
            if where["alpha_grad"] is not None:  # None in warm-up: the logits (and Adam's moments) stay put
                alpha.grad = where["alpha_grad"]
                arch_opt.step()

        def on_step(ep: int, pos: int) -> None:
            where["loss_sum"] = where["loss_sum"] + where["loss"]
            where["epoch"], where["step"] = ep, pos
            where["done"] += 1
            if pos % 10 == 0:
                report(None)
            if stop_after_steps is not None and where["done"] >= stop_after_steps:
                raise KeyboardInterrupt

        def on_epoch_end(ep_done: int, rec: dict) -> None:
            rec = {**rec, "loss": float(where["loss_sum"]) / steps_per_epoch}
            history.append({k: rec[k] for k in ("epoch", "loss", "lr")})
            append(argmax_record(ep_done, {"loss": rec["loss"]}))
            save(ep_done, 0)
            where["epoch"], where["step"] = ep_done, 0
            report(rec["loss"])

        # a checkpoint that finished an epoch whose record the journal lacks (interrupted between
        # the two): the record is the checkpoint's own state, evaluated now
        if state is not None and epoch > 0 and step0 == 0 and not any(r["epoch"] == epoch for r in records):
            append(argmax_record(epoch, {"loss": history[-1]["loss"] if history else None}))
        try:
            train(model, data, recipe, step, opt, rt, start_epoch=epoch, start_step=step0, on_epoch_start=on_epoch_start,
                  on_epoch_end=on_epoch_end, after_backward=after_backward, on_step=on_step)
        except KeyboardInterrupt:
            # a checkpoint at the last finished step: --resume continues from there exactly
            # (an epoch whose steps all ran but whose record is not journaled yet counts as done:
            # resuming journals its record from the checkpoint's state)
            ep, pos = where["epoch"], where["step"]
            save(ep + 1, 0) if pos >= steps_per_epoch else save(ep, pos)
            raise
        if not any(r["kind"] == "final" for r in records):
            chosen = None
            if opts.derive_samples:
                def append_reported(rec: dict) -> None:
                    append(rec)
                    report(None)

                chosen = _derive(setup, alpha, model, records, append_reported)
            append(_final_record(setup, alpha, model, len(records), chosen))
            if out is not None and form.save_supernet is not None:  # before the checkpoint says finished
                from hwnas.search.oneshot.mbconv_mixed import SUPERNET_FILE, supernet_meta

                form.save_supernet(model, out / SUPERNET_FILE, supernet_meta(space, opts, setup.ds, cfg.seed, method, history))
            save(opts.epochs, 0, finished=True)
    return records


def _log_probs(setup: _Setup, alpha: Any) -> Any:
    import torch

    return torch.log_softmax(setup.form.logits(alpha.detach()).double(), -1).cpu().numpy()


def _argmax_within(setup: _Setup, log_p: Any) -> tuple[tuple[int, ...], Optional[str]]:
    """The argmax genome, or where it misses the budget the most probable one within it (and the
    id of the arch it was repaired from)."""
    budget, form = setup.cfg.latency_budget_ms, setup.form
    genome = tuple(int(v) for v in log_p.argmax(-1))
    if budget is not None and form.genome_latency(genome) > budget:
        repaired = form.repair(log_p, budget)
        assert repaired is not None  # the budget was checked against the space's minimum
        return repaired, setup.space.decode(genome).id
    return genome, None


# draws per wanted arch before the derivation settles for fewer (a distribution that puts little
# mass within the budget, or a small space)
DRAWS_PER_SAMPLE = 200


def draw_within_budget(setup: _Setup, log_p: Any, k: int, seed: int) -> tuple[list[tuple[int, ...]], int]:
    """Up to ``k`` genomes of distinct archs drawn from the distribution ``exp(log_p)`` (one
    categorical per decision) whose predicted latency is within the budget, in draw order, and
    the number of draws it took. A function of (log_p, k, seed) alone."""
    import numpy as np

    cards = setup.form.cards
    cdf = np.cumsum(np.exp(log_p), axis=-1)
    cdf /= cdf[np.arange(len(cards)), np.asarray(cards) - 1][:, None]  # rows sum to 1 over their own choices
    rng = np.random.default_rng([int(seed), 0xDE51])
    budget = setup.cfg.latency_budget_ms
    out: list[tuple[int, ...]] = []
    seen: set[str] = set()
    draws, chunk = 0, max(64, 4 * k)
    while len(out) < k and draws < DRAWS_PER_SAMPLE * k:
        u = rng.random((chunk, len(cards)))
        G = np.minimum((u[:, :, None] > cdf[None, :, :]).sum(-1), np.asarray(cards) - 1)
        archs = [setup.space.decode([int(v) for v in g]) for g in G]
        lat = setup.latency.predict_many(archs)
        for g, arch, ms in zip(G, archs, lat):
            draws += 1
            if arch.id in seen or (budget is not None and ms > budget):
                continue
            seen.add(arch.id)
            out.append(tuple(int(v) for v in g))
            if len(out) == k:
                break
    return out, draws


def _derive(setup: _Setup, alpha: Any, model: Any, records: list[dict], append: Callable[[dict], None]) -> dict:
    """FBNet's derivation, ranked on the trained supernet: the argmax arch (repaired into the
    budget) and ``derive_samples`` distinct archs within the budget drawn from the learned
    distribution, each scored by the supernet's val accuracy and journaled (kind "sample"); the
    best of them (ties: the more probable) is the final arch. A resumed run draws the same list
    and scores only the archs its journal lacks."""
    import numpy as np

    log_p = _log_probs(setup, alpha)
    first, _ = _argmax_within(setup, log_p)
    drawn, draws = draw_within_budget(setup, log_p, setup.opts.derive_samples, setup.cfg.seed)
    first_id = setup.space.decode(list(first)).id
    candidates = [first] + [g for g in drawn if setup.space.decode(list(g)).id != first_id]
    done = [r for r in records if r["kind"] == "sample"]
    rows = np.arange(len(setup.form.cards))
    for j, genome in enumerate(candidates):
        if j < len(done):
            continue
        extra = {"sample": j, "log_prob": float(log_p[rows, list(genome)].sum()), "draws": draws}
        append(setup.record(len(records), genome, model, "sample", setup.opts.epochs, extra, evaluate=False))
    scored = [r for r in records if r["kind"] == "sample"]
    return max(scored, key=lambda r: (r["supernet_accuracy"], r["log_prob"], -r["sample"]))


def _final_record(setup: _Setup, alpha: Any, model: Any, i: int, chosen: Optional[dict] = None) -> dict:
    """The argmax arch, or where it misses the budget the most probable arch within it; with the
    derivation by samples, the sample the supernet scored best (``chosen``)."""
    import torch

    form = setup.form
    log_p = _log_probs(setup, alpha)
    genome, repaired_from = _argmax_within(setup, log_p)
    extra: dict[str, Any] = {"repaired_from": repaired_from}
    est = None
    if chosen is not None:  # scored on the supernet already: the same weights give the same estimate
        est = chosen["supernet_accuracy"]
        genome = tuple(chosen["genome"])
        extra = {"repaired_from": None, "derived_from": {"sample": chosen["sample"], "of": setup.opts.derive_samples,
                                                         "argmax_repaired_from": repaired_from}}
    with torch.no_grad():
        extra["expected_latency_ms"] = float(form.expected(form.probs(alpha.detach())))
    extra["probs"] = form.prob_rows(alpha)
    return setup.record(i, genome, model, "final", setup.opts.epochs, extra, est=est)


def _write_outputs(out: Path, result: SearchResult, cfg: SearchConfig, setup: _Setup) -> None:
    from hwnas.search.plot import pareto_png

    atomic_write_json(out / PARETO_FILE, {"objectives": list(cfg.objectives), "front": result.pareto})
    atomic_write_json(out / BEST_FILE, result.best)
    title = (f"{space_label(setup.space, cfg.space_settings)}\n{cfg.strategy} | {setup.opts.epochs} epochs | "
             f"latency from {cfg.profile}")
    atomic_write_bytes(out / PLOT_FILE, pareto_png(_comparable(result.records, setup), result.pareto, cfg.latency_budget_ms, title))
