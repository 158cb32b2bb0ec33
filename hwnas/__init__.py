"""hwnas: hardware-aware neural architecture search.

Profile a device, search for the most accurate network under a latency budget on it, and
export that network as a pruned, INT8-quantized ONNX model.

Importing this package is cheap and never imports torch: the edge-device profiling path
(``hwnas profile run-bundle``) runs with numpy and onnxruntime alone.
"""

__version__ = "0.1.0"

from hwnas.errors import UserError

__all__ = ["UserError", "__version__"]
