"""Registered reference tables: `--profile mbv3-32/ort-cpu` names a shipped table, `hwnas list
profiles` describes each from the table itself, and a file of the same name wins."""

from __future__ import annotations

import json


from hwnas.latency import load_table
from hwnas.latency.reference import REFERENCE_PROFILES, profiles_dir, reference_path, resolve_table_path
from hwnas.search.paths import resolve_profile_spec

from conftest import REPO, run_cli as run


def test_every_registered_name_is_a_shipped_table_of_its_space_and_backend():
    assert profiles_dir() == REPO / "profiles"
    shipped = {p.name for p in (REPO / "profiles").glob("*.json")}
    assert set(REFERENCE_PROFILES.values()) == shipped, "every shipped table has a name, every name a table"
    for name in REFERENCE_PROFILES:
        table = load_table(name)
        space, backend = name.split("@")[0].split("/")
        dtype = "int8" if backend.endswith("-int8") else "float32"  # a table of the export's INT8 files
        assert table.space_name == space and table.backend["name"] == backend.removesuffix("-int8"), name
        assert table.backend.get("dtype", "float32") == dtype, name


def test_list_profiles_reads_each_rows_facts_from_its_table(capsys):
    code, out, err = run(capsys, "list", "profiles", "--json")
    assert code == 0, err
    rows = {r["name"]: r for r in map(json.loads, out.splitlines())}
    assert set(rows) == set(REFERENCE_PROFILES)
    for name, row in rows.items():
        d = json.loads(reference_path(name).read_text())
        assert row["within_10pct"] == d["validation"]["within_10pct"]
        assert row["created"] == d["created"][:10] and str(d["fingerprint"]["cores"]) in row["machine"]
        assert row["units"] == (d.get("units") or {}).get("latency", "protocol")
    code, out, err = run(capsys, "list", "datasets", "--json")
    assert code == 0 and {json.loads(line)["name"] for line in out.splitlines()} >= {"digits", "cifar10", "imagefolder"}


def test_a_name_resolves_to_its_file_in_commands_and_run_folders(capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert resolve_profile_spec("mbv3-32/ort-cpu") == str((REPO / "profiles" / REFERENCE_PROFILES["mbv3-32/ort-cpu"]).resolve())
    archs = tmp_path / "a.jsonl"
    code, out, err = run(capsys, "sample", "--space", "mbv3-32", "--n", "2", "--seed", "0")
    archs.write_text(out)
    by_name = run(capsys, "latency", "--profile", "mbv3-32/torch-cpu", "--arch", str(archs), "--json")
    by_file = run(capsys, "latency", "--profile", str(REPO / "profiles" / REFERENCE_PROFILES["mbv3-32/torch-cpu"]), "--arch", str(archs), "--json")
    assert by_name[0] == 0 and by_name[1] == by_file[1]
    # a user's own file of that name wins over the registered table
    (tmp_path / "mbv3-32").mkdir()
    (tmp_path / "mbv3-32" / "ort-cpu").write_text("{}")
    assert resolve_table_path("mbv3-32/ort-cpu").resolve() == tmp_path / "mbv3-32" / "ort-cpu"
    code, out, err = run(capsys, "latency", "--profile", "mbv3-32/ort-cpu", "--arch", str(archs))
    assert code == 2 and len(err.strip().splitlines()) == 1, err
    code, out, err = run(capsys, "latency", "--profile", "mbv3-32/no-such", "--arch", str(archs))
    assert code == 2 and "hwnas list profiles" in err and len(err.strip().splitlines()) == 1, err


def test_vector_extensions_tell_two_machines_of_one_model_name_apart():
    from hwnas.latency.fingerprint import ISA_FLAGS, device_fingerprint, fingerprint_differences

    here = device_fingerprint()
    assert set(here["isa"]) <= set(ISA_FLAGS)
    avx2_only = {**here, "isa": ["avx2"]}
    avx512 = {**here, "isa": ["avx2", "avx512f", "avx512_vnni"]}
    (diff,) = fingerprint_differences(avx2_only, avx512)
    assert diff.startswith("isa:") and "avx512f" in diff and "avx512_vnni" in diff
    assert fingerprint_differences(avx512, dict(avx512)) == []
    older = {k: v for k, v in avx512.items() if k != "isa"}  # tables from before the field: no claim either way
    assert fingerprint_differences(older, avx2_only) == []
