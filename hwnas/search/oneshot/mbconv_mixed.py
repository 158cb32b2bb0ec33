"""The MBConv space's one-shot form: the elastic supernet (``hwnas.accuracy.supernet``) run one
sampled path at a time with the path's gates in the graph, so that gradients reach the logits.

Every decision of ``space.decisions()`` has a row of logits: depth and width per stage, kernel
and expand ratio per block slot, and block kind, activation and SE per stage where the space
searches them. Each step samples one choice per decision (``MBConvForm.sample``) and
``MixedMBConvNet.forward(x, weights, index)`` computes that subnet through the shared weights,
as ``Supernet.set_active`` would, with the sampled choices' weights (1 in the forward pass)
multiplied in where each choice acts:

- every block's branch is scaled by the gates of what shapes it (``x + g * (block(x) - x)`` for
  a residual block, ``g * block(x)`` otherwise), ProxylessNAS / FBNet's per-block mixed op: its
  kernel and expand ratio, its stage's width and style, and, for a block that the shallowest
  depth skips, its stage's depth. Depth is relaxed as in ProxylessNAS / FBNet (the blocks past
  the shortest depth choose between themselves and a skip), as one categorical per stage over
  the space's depths, so it keeps the space's meaning; the expected latency weighs block b by
  P(depth > b). Width is searched by gradient too (the supernet's first channels), and the
  expected latency takes the expectation over the previous stage's width for each first block.

What one path can and cannot tell: a gate's gradient is the loss's sensitivity to scaling its
branch, so it is informative where the branch is mixed with an ungated tensor (a residual
block's identity, or a residual block after it). A gate whose output goes straight into a
convolution and BatchNorm in training mode (a stage's non-residual first block followed by a
non-residual block) is scale-invariant there and gets no cross-entropy gradient in that step
(ProxylessNAS' one-path estimate has the same blind spot; its two-path form compares two
candidates instead); the latency term reaches every decision regardless. A step in which the
shallowest depth is sampled leaves the depth's logits to the latency term (as ProxylessNAS'
zero op).

``gdas``: the choices are a straight-through Gumbel-softmax sample (GDAS). ``darts`` on an MBConv
space is not a softmax mixture (every kernel x expand x depth x width combination at once would
cost the whole space per step); it is ProxylessNAS's binarized path, one-path form: the choice is
drawn from softmax(alpha) itself, the gate is the hard one-hot in the forward pass with the
softmax's gradient (BinaryConnect-style, as ProxylessNAS), and the latency term is the same exact
expectation. The supernet holds no architecture parameters, so ``Supernet``'s state dict (and the
supernet checkpoint format that ``hwnas export`` reads) is unchanged.
"""

from __future__ import annotations

from typing import Any, Optional, Sequence

import torch

from hwnas.accuracy.supernet import Supernet
from hwnas.errors import UserError
from hwnas.search.oneshot.mbconv_latency import MBConvExpectedLatency
from hwnas.space.ref import SpaceRef

SUPERNET_FILE = "supernet.pt"  # the trained supernet in hwnas.accuracy.supernet.train's format


class MixedMBConvNet(Supernet):
    """``Supernet`` whose forward also takes the sampled gates; ``forward(x)`` alone runs the
    active arch (``set_active``), as the plain supernet does."""

    def forward(self, x: torch.Tensor, weights: Optional[torch.Tensor] = None,  # type: ignore[override]
                index: Optional[Sequence[int]] = None) -> torch.Tensor:
        if weights is None:
            return super().forward(x)
        L = self.layout
        arch = self.space.decode(list(index))
        c = self.space.config
        shallowest = min(c.depths)
        x = self.stem(x)
        for s, (d, w) in enumerate(zip(arch["depths"], arch["widths"])):
            style = self.space.stage_style(arch, s)
            stage_gate = weights[L.width[s], index[L.width[s]]]
            for _, r in L.style[s]:
                stage_gate = stage_gate * weights[r, index[r]]
            for b in range(d):
                kr, er = L.kernel[s][b], L.expand[s][b]
                gate = stage_gate * weights[kr, index[kr]] * weights[er, index[er]]
                if b >= shallowest:  # a block the shallowest depth skips: the depth's gate too
                    gate = gate * weights[L.depth[s], index[L.depth[s]]]
                out = self.blocks[s * self.max_depth + b](x, arch["kernels"][s][b], arch["expands"][s][b], w, style)
                residual = (b > 0 or c.strides[s] == 1) and x.shape[1] == w  # as the blocks decide
                x = x + gate * (out - x) if residual else gate * out
        return self.head(x)

    @property
    def layout(self) -> Any:
        lay = self.__dict__.get("_layout")
        if lay is None:
            from hwnas.search.oneshot.mbconv_latency import MBConvLayout

            lay = self.__dict__["_layout"] = MBConvLayout(self.space)
        return lay


class MBConvForm:
    """What the one-shot run needs of an MBConv space (see ``hwnas.search.oneshot.forms``)."""

    kind = "mbconv"

    def __init__(self, space: Any, latency: Any) -> None:
        predictor = getattr(latency, "predictor", None)
        if predictor is None or not hasattr(predictor, "term_cost"):
            raise UserError(f"gradient search on {space.name} needs a device table (--profile FILE.json from "
                            f"`hwnas profile`), not {latency.describe().get('spec')!r}")
        self.space, self.latency = space, latency
        self.expected = MBConvExpectedLatency(space, predictor)
        self.cards = self.expected.cards
        cmax = max(self.cards)
        mask = torch.zeros(len(self.cards), cmax)
        for d, c in enumerate(self.cards):
            mask[d, c:] = float("-inf")  # rows are padded to the most choices; padding never wins
        self._mask, self._masks = mask, {}

    def min_latency(self) -> tuple[float, Any]:
        ms, arch = self.latency.min_latency()
        return float(ms), arch

    def logits(self, alpha: torch.Tensor) -> torch.Tensor:
        m = self._masks.get(alpha.device)
        if m is None:
            m = self._masks[alpha.device] = self._mask.to(alpha.device)
        return alpha + m.to(alpha.dtype)

    def probs(self, alpha: torch.Tensor) -> torch.Tensor:
        return self.logits(alpha).softmax(-1)

    def prob_rows(self, alpha: torch.Tensor) -> list[list[float]]:
        p = self.probs(alpha.detach()).cpu()
        return [[round(float(v), 6) for v in row[:c]] for row, c in zip(p, self.cards)]

    def sample(self, alpha: torch.Tensor, method: str, tau: float) -> tuple[torch.Tensor, list[int]]:
        from hwnas.search.oneshot.forms import gumbel_sample

        logits = self.logits(alpha)
        if method == "gdas":
            w, index = gumbel_sample(logits, tau)
            return w, index
        # darts: ProxylessNAS' binarized path (module docstring)
        p = logits.softmax(-1)
        index = torch.multinomial(p.detach().float(), 1).squeeze(1)
        hard = torch.zeros_like(p).scatter_(-1, index[:, None], 1.0)
        return hard - p.detach() + p, index.tolist()

    def make_net(self, num_classes: int) -> MixedMBConvNet:
        return MixedMBConvNet(self.space, num_classes=num_classes)

    def fixed_path(self, model: MixedMBConvNet, genome: Sequence[int]) -> MixedMBConvNet:
        model.set_active(self.space.decode([int(g) for g in genome]))
        return model

    def genome_latency(self, genome: Sequence[int]) -> float:
        return self.expected.of_genome(genome)

    def repair(self, log_p: Any, budget: float) -> Optional[tuple[int, ...]]:
        return self.expected.most_probable_within(list(log_p), budget, fallback=self.min_latency()[1])

    def save_supernet(self, model: MixedMBConvNet, path: Any, meta: dict) -> None:
        """The trained weights as a supernet checkpoint (``load_supernet`` reads it: export
        extracts the found arch from it instead of training from scratch)."""
        from hwnas.accuracy.supernet.checkpoint import save_checkpoint

        sd = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
        save_checkpoint(path, meta, sd, None)


def supernet_meta(space: Any, opts: Any, ds: Any, seed: int, method: str, history: list) -> dict:
    """The header ``hwnas.accuracy.supernet.train`` writes, for the one-shot search's supernet."""
    import dataclasses

    from hwnas.accuracy.supernet.train import SupernetTrainConfig

    train = SupernetTrainConfig(data=opts.data, epochs=opts.epochs, batch_size=opts.batch_size, lr=opts.lr,
                                weight_decay=opts.weight_decay, label_smoothing=0.0, num_random=0,
                                sort_channels=False, seed=seed, train_limit=opts.train_limit,
                                val_limit=opts.val_limit, device=opts.device, threads=opts.threads)
    return {**SpaceRef.of(space).flat(),
            "train": dataclasses.asdict(train), "epoch": opts.epochs, "step": 0, "done": True, "world": 1,
            "num_classes": ds.num_classes, "kernel_transform": False, "dataset": ds.describe(),
            "preprocessing": ds.preprocessing.to_dict(), "history": history,
            "trained_by": f"hwnas search --strategy {method}: one sampled path per step on half the training "
                          f"images (the other half trained the architecture)"}
