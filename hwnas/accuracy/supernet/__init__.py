"""The weight-sharing supernet, in one place: the elastic ops (``elastic``), the supernet that
holds every arch of an MBConv space (``model``), its training on the shared loop and its
checkpoints (``train``, ``checkpoint``), evaluating a subnet with re-calibrated BatchNorm
(``subnet_eval``) and the ``supernet:CKPT`` evaluator (``evaluator``)."""

from hwnas.accuracy.supernet.model import Supernet, _init_weights  # noqa: F401  (the names others use)
