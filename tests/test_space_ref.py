"""SpaceRef, the one owner of "which space a file was made for": each file form round-trips, a
reference resolves to its space, and every mismatch is one line naming both sides and the fix."""

import pytest

from hwnas.errors import UserError
from hwnas.space import get_space
from hwnas.space.ref import SpaceRef

SMALL = {"depths": [1, 2], "kernels": [3]}


def test_each_file_form_round_trips_and_resolves_to_the_same_space():
    space = get_space("mbv3-32", **SMALL)
    ref = SpaceRef.of(space, SMALL)
    for record in (ref.table_record(), ref.run_record(), {**ref.flat(), "epoch": 3}):
        back = SpaceRef.from_record(record)
        assert back.name == "mbv3-32" and back.config_hash == space.config_hash()
        again = back.resolve()
        assert again.config_hash() == space.config_hash() and back.mismatch(space) is None
        back.check(space, "file", "fix it")  # no error


def test_mismatches_are_one_line_with_the_fix():
    space = get_space("mbv3-32", **SMALL)
    ref = SpaceRef.of(space)
    with pytest.raises(UserError) as e:
        ref.check(get_space("mbv3-32"), "latency table", "rebuild it")
    msg = str(e.value)
    assert "another mbv3-32 configuration" in msg and space.config_hash() in msg and msg.endswith("rebuild it")
    with pytest.raises(UserError, match="was made for space 'mbv3-32', not 'nb201'; use another"):
        ref.check(get_space("nb201"), "checkpoint 'x.pt'", "use another")
    # a record whose preset this hwnas builds differently is refused, not silently used
    stale = SpaceRef("mbv3-32", "0" * 16, settings=SMALL)
    with pytest.raises(UserError, match="builds differently"):
        stale.resolve("run 'r'", "rerun the search")
    # records older than the hash: the name alone is checked
    assert SpaceRef("mbv3-32").mismatch(space) is None
