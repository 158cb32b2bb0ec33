"""The table:CSV#COLUMN evaluator: percent -> fraction, and clear errors on mismatched tables."""

import csv

import numpy as np
import pytest

from hwnas.accuracy import get_evaluator
from hwnas.errors import UserError
from hwnas.space import get_space



from conftest import nb201_csv_path as nb201_csv  # noqa: E402  (one place knows where shared data lives)


@pytest.fixture(scope="module")
def nb201_slice(tmp_path_factory):
    """A fixed slice of the shared table: every 50th row plus the two best cells, 4 columns."""
    src = nb201_csv()
    if not src.is_file():
        pytest.skip(f"NAS-Bench-201 table not found at {src} (set HWNAS_SHARED_DATA)")
    dst = tmp_path_factory.mktemp("nb201") / "slice.csv"
    with open(src, newline="") as f, open(dst, "w", newline="") as g:
        w = csv.writer(g)
        w.writerow(["idx", "arch_str", "c10_test", "lat_pixel3"])
        for r in csv.DictReader(f):
            if int(r["idx"]) % 50 == 0 or r["idx"] in ("6111", "13714"):
                w.writerow([r["idx"], r["arch_str"], r["c10_test"], r["lat_pixel3"]])
    return dst


def test_accuracy_is_a_fraction_and_matches_known_best(nb201_slice):
    space = get_space("nb201")
    ev = get_evaluator(f"table:{nb201_slice}#c10_test", space)
    rows = list(csv.DictReader(open(nb201_slice)))
    archs = [space.parse(r["arch_str"]) for r in rows]
    got = np.array(ev.evaluate(archs))
    assert np.allclose(got, [float(r["c10_test"]) / 100 for r in rows])
    assert got.max() == pytest.approx(0.943733, abs=1e-6)  # the README's known best, idx 6111/13714
    assert ev.describe()["column"] == "c10_test" and len(ev.describe()["sha256"]) == 64


def test_wrong_space_is_a_user_error(nb201_slice):
    with pytest.raises(UserError, match="does not fit space 'mbv3-32'"):
        get_evaluator(f"table:{nb201_slice}#c10_test", get_space("mbv3-32"))


def test_bad_arch_string_names_the_line(tmp_path):
    p = tmp_path / "bad.csv"
    p.write_text("arch_str,c10_test\n|nor_conv_3x3~0|+|none~0|none~1|+|none~0|none~1|none~2|,90\n|conv9x9~0|+|x|,50\n")
    with pytest.raises(UserError, match="line 3"):
        get_evaluator(f"table:{p}#c10_test", get_space("nb201"))


def test_missing_column_file_and_spec_errors(nb201_slice, tmp_path):
    space = get_space("nb201")
    with pytest.raises(UserError, match="no numeric column 'c11_test'"):
        get_evaluator(f"table:{nb201_slice}#c11_test", space)
    with pytest.raises(UserError, match="not an accuracy in percent"):
        get_evaluator(f"table:{nb201_slice}#idx", space)  # indices run past 100
    with pytest.raises(UserError, match="does not exist"):
        get_evaluator(f"table:{tmp_path}/none.csv#c10_test", space)
    with pytest.raises(UserError, match="CSV#COLUMN"):
        get_evaluator(f"table:{nb201_slice}", space)


def test_arch_outside_the_table_is_a_user_error(nb201_slice):
    space = get_space("nb201")
    ev = get_evaluator(f"table:{nb201_slice}#c10_test", space)
    missing = space.parse("|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|+|nor_conv_3x3~0|nor_conv_3x3~1|nor_conv_1x1~2|")
    if missing.id in ev.table.row_of:
        pytest.skip("the chosen arch happens to be in the slice")
    with pytest.raises(UserError, match="not in table"):
        ev.evaluate([missing])
