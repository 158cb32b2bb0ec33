"""check_budget: the one rule for which measurement a latency budget is checked on."""

from hwnas.latency.budget import PLAIN_NOTE, check_budget


def test_an_ort_profile_checks_the_shipped_file_in_onnx_runtime():
    c = check_budget(1.0, "int8", 0.8)
    assert (c.latency_ms, c.meets, c.protocol_latency_ms) == (0.8, True, None)
    assert c.checked_on == "the INT8 ONNX file in ONNX Runtime"
    assert check_budget(0.5, "fp32", 0.8).meets is False


def test_a_torch_profile_checks_the_torch_module_on_its_backend():
    c = check_budget(1.0, "int8", 0.4, torch_backend="torch-cpu", torch_ms=1.2)
    assert (c.latency_ms, c.meets) == (1.2, False)  # the ONNX file's 0.4 ms is not what the profile timed
    assert c.checked_on == "the FP32 torch model on torch-cpu (the profile's backend)"


def test_a_plain_timing_replaces_the_estimate_and_keeps_it_beside():
    c = check_budget(1.0, "fp32", 0.9, plain_ms=1.05)
    assert (c.latency_ms, c.protocol_latency_ms, c.meets) == (1.05, 0.9, False)
    assert c.checked_on.endswith(PLAIN_NOTE)


def test_no_budget_or_no_measurement_gives_no_verdict():
    assert check_budget(None, "fp32", 0.9).meets is None
    assert check_budget(1.0, "fp32", None).meets is None
