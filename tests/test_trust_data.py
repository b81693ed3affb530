"""Issue 33: data the pipeline must not trust. A diverging LE (NaN loss, NaN rewards/states), an
LE folder holding nan/inf, ids with a backslash, tab or newline, an empty or non-UTF-8 ``.item``,
a field over the csv module's size limit, and a bad ``.inter`` line reported before the heavy
imports. Each ends in one message naming the file/field/option (exit 2 via ConfigError)."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from recbole_lea.datasets import ConvertOptions, DatasetError, convert_csv
from recbole_lea.errors import ConfigError
from recbole_lea.le import train as le_train
from recbole_lea.le.build import build_le
from recbole_lea.le.data import LEInputError
from recbole_lea.le.files import LEDatasetMismatch, verify_le_dir
from recbole_lea.le.testing import TINY_DATASET_KEYS, TINY_PROFILE, save_tiny_llm, seal_le_dir, write_tiny_dataset

BIG = 10 * 1024 * 1024  # a 10 MB field: far over the csv module's 131072-character limit


@pytest.fixture(scope="module")
def tiny_llm_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return save_tiny_llm(tmp_path_factory.mktemp("llm") / "tiny-llama")


def _overrides(llm: Path, cache: Path, **extra: object) -> dict:
    return {**TINY_DATASET_KEYS, "le_model": str(llm), "le_cache_dir": str(cache), **extra}


# --------------------------------------------------------------------------- 1. non-finite LE


@pytest.mark.parametrize("sharded", [False, True], ids=["train_le", "train_le_dp"])
def test_diverging_le_training_stops_with_one_message(tmp_path: Path, tiny_llm_dir: Path, sharded: bool) -> None:
    data = tmp_path / "data"
    write_tiny_dataset(data)
    ov = _overrides(tiny_llm_dir, tmp_path / "cache", le_lr=1e30)
    with pytest.raises(LEInputError, match=r"LE epoch 1\b.*(l_rm|l_sm).*not finite.*le_lr") as err:
        build_le("tiny", data, dict(TINY_PROFILE), ov, _sharded=sharded)
    assert "1e+30" in str(err.value)  # the value in use, so the fix is concrete
    assert not list(data.rglob("tiny-lea.inter"))  # nothing written


def test_writer_refuses_non_finite_rewards(tmp_path: Path, tiny_llm_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """With the training guard off, a diverged LE reaches the writer: it names the field, writes nothing."""
    monkeypatch.setattr(le_train, "check_finite_loss", lambda *a, **k: None, raising=False)
    data = tmp_path / "data"
    write_tiny_dataset(data)
    ov = _overrides(tiny_llm_dir, tmp_path / "cache", le_lr=1e30)
    with pytest.raises(LEInputError, match=r"le_reward.*not finite.*le_lr"):
        build_le("tiny", data, dict(TINY_PROFILE), ov)
    assert not list(data.rglob("tiny-lea.inter"))


def _fake_le(tiny_root: Path, tmp_path: Path) -> Path:
    folder = tmp_path / "tiny-lea"
    shutil.copytree(tiny_root / "tiny-lea", folder)
    return folder


def _edit_row(folder: Path, field: str, value: str) -> int:
    """Put ``value`` into ``field`` of the first training row; re-seal; returns the file line number."""
    path = folder / "tiny-lea.inter"
    lines = path.read_text(encoding="utf-8").split("\n")
    names = [c.split(":")[0] for c in lines[0].split("\t")]
    col = names.index(field)
    row = next(i for i, line in enumerate(lines[1:], start=1) if line.split("\t")[names.index("le_train")] != "0.0")
    cells = lines[row].split("\t")
    if field in ("le_state", "le_next_state"):
        parts = cells[col].split(" ")
        parts[1] = value
        cells[col] = " ".join(parts)
    else:
        cells[col] = value
    lines[row] = "\t".join(cells)
    path.write_text("\n".join(lines), encoding="utf-8")
    seal_le_dir(folder)
    return row + 1


def test_verify_accepts_a_finite_le_folder(tiny_root: Path, tmp_path: Path) -> None:
    folder = _fake_le(tiny_root, tmp_path)
    assert verify_le_dir(folder, "rebuild it")["checksums"]
    _edit_row(folder, "le_neg_id", "Banana_INF_e+999")  # "nan"/"inf" in an id is not a number field
    assert verify_le_dir(folder, "rebuild it")["checksums"]


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("le_reward", "nan"),
        ("le_neg_reward", "inf"),
        ("le_aug_reward", "-inf"),
        ("le_state", "nan"),
        ("le_next_state", "inf"),
        ("le_reward", "1e999"),
    ],
)
def test_verify_refuses_non_finite_le_values(tiny_root: Path, tmp_path: Path, field: str, value: str) -> None:
    folder = _fake_le(tiny_root, tmp_path)
    line = _edit_row(folder, field, value)
    with pytest.raises(
        LEDatasetMismatch, match=rf"tiny-lea\.inter: line {line}: field '{field}'.*not finite.*rebuild it"
    ):
        verify_le_dir(folder, "rebuild it")


# --------------------------------------------------------------------------- 2. ids kept byte for byte


def _backslash_ids(folder: Path) -> None:
    """Every item id ``i<k>`` becomes ``i\\<k>`` in the .inter and .item files."""
    for path in (folder / "tiny.inter", folder / "tiny.item"):
        text = path.read_text(encoding="utf-8")
        path.write_text(re.sub(r"(?m)(^|\t)i(\d+)(?=\t|$)", r"\1i\\\2", text), encoding="utf-8")


def _column(path: Path, index: int) -> list[bytes]:
    return [line.split(b"\t")[index] for line in path.read_bytes().split(b"\n")[1:] if line]


def test_item_ids_with_a_backslash_are_written_byte_for_byte(tmp_path: Path, tiny_llm_dir: Path) -> None:
    data = tmp_path / "data"
    write_tiny_dataset(data)
    _backslash_ids(data / "tiny")
    base = _column(data / "tiny" / "tiny.inter", 1)
    assert all(b"\\" in b for b in base)
    out = build_le("tiny", data, dict(TINY_PROFILE), _overrides(tiny_llm_dir, tmp_path / "cache"))
    lea = out / "tiny-lea.inter"
    assert _column(lea, 1) == base
    ids = set(_column(data / "tiny" / "tiny.item", 0))
    assert set(_column(lea, 5)) <= ids and set(_column(lea, 7)) <= ids  # le_neg_id, le_aug_id
    assert (out / "tiny-lea.item").read_bytes() == (data / "tiny" / "tiny.item").read_bytes()


def _opts(tmp_path: Path) -> ConvertOptions:
    return ConvertOptions(out=str(tmp_path / "out"), yaml_out=str(tmp_path / "ds.yaml"), progress=False)


@pytest.mark.parametrize("bad", ["i\t2", "i\n2", "i\r2"], ids=["tab", "newline", "return"])
def test_converter_refuses_a_tab_or_newline_in_an_id(tmp_path: Path, bad: str) -> None:
    inter = tmp_path / "log.csv"
    inter.write_text(f'user_id,item_id,t\nu1,i1,1\nu1,"{bad}",2\nu2,i1,3\n', encoding="utf-8", newline="")
    with pytest.raises(DatasetError, match=rf"log\.csv: line {3 + bad.count(chr(10))}: item id .*tab or line break"):
        convert_csv(str(inter), None, "log", _opts(tmp_path), time_col="t")
    assert not (tmp_path / "out" / "log").exists()


def test_converter_refuses_a_newline_in_a_json_user_id(tmp_path: Path) -> None:
    from recbole_lea.datasets import convert_amazon

    reviews = tmp_path / "r.json"
    rows = [
        {"reviewerID": "a", "asin": "x", "unixReviewTime": 1},
        {"reviewerID": "b\nc", "asin": "x", "unixReviewTime": 2},
    ]
    reviews.write_text("\n".join(json.dumps(r) for r in rows) + "\n", encoding="utf-8")
    with pytest.raises(DatasetError, match=r"r\.json: line 2: user id 'b\\nc' .*tab or line break"):
        convert_amazon(str(reviews), None, "r", _opts(tmp_path))


# --------------------------------------------------------------------------- 3. one message, no traceback


def test_empty_item_file_is_one_message(tmp_path: Path, tiny_llm_dir: Path) -> None:
    data = tmp_path / "data"
    write_tiny_dataset(data)
    (data / "tiny" / "tiny.item").write_bytes(b"")
    with pytest.raises(LEInputError, match=r"tiny\.item.*empty"):
        build_le("tiny", data, dict(TINY_PROFILE), _overrides(tiny_llm_dir, tmp_path / "cache"))


def test_latin1_item_file_is_one_message(tmp_path: Path, tiny_llm_dir: Path) -> None:
    data = tmp_path / "data"
    write_tiny_dataset(data)
    path = data / "tiny" / "tiny.item"
    lines = path.read_text(encoding="utf-8").split("\n")
    lines[4] = lines[4] + " caf\u00e9"
    path.write_bytes("\n".join(lines).encode("latin-1"))
    with pytest.raises(LEInputError, match=r"tiny\.item: line 5: .*not UTF-8.*UTF-8"):
        build_le("tiny", data, dict(TINY_PROFILE), _overrides(tiny_llm_dir, tmp_path / "cache"))


def test_huge_item_field_is_one_message(tmp_path: Path, tiny_llm_dir: Path) -> None:
    data = tmp_path / "data"
    write_tiny_dataset(data)
    path = data / "tiny" / "tiny.item"
    lines = path.read_text(encoding="utf-8").split("\n")
    cells = lines[3].split("\t")
    cells[1] = "a" * BIG
    lines[3] = "\t".join(cells)
    path.write_text("\n".join(lines), encoding="utf-8")
    with pytest.raises(LEInputError, match=r"tiny\.item: line 4, field 'movie_title'.*131072"):
        build_le("tiny", data, dict(TINY_PROFILE), _overrides(tiny_llm_dir, tmp_path / "cache"))


def test_huge_inter_field_is_one_message(tmp_path: Path) -> None:
    from recbole_lea.datasets.validate import check_atomic_inter

    path = tmp_path / "d.inter"
    body = f"u1\ti1\t1\tok\nu1\ti2\t2\t{'w ' * (BIG // 2)}\n"
    path.write_text("user_id:token\titem_id:token\ttimestamp:float\treview:token_seq\n" + body, encoding="utf-8")
    fields = {"user_id": "token", "item_id": "token", "timestamp": "float"}
    with pytest.raises(ConfigError, match=r"d\.inter: line 3, field 'review'.*131072"):
        check_atomic_inter(path, fields)
    # under the limit: unchanged
    path.write_text("user_id:token\titem_id:token\ttimestamp:float\treview:token_seq\nu1\ti1\t1\tok\n")
    check_atomic_inter(path, fields)


def test_inter_line_error_is_reported_before_torch_is_imported(tmp_path: Path) -> None:
    """The check a run makes of its .inter (``check_run_inter``) imports neither torch nor RecBole,
    so the CLI can run it before the heavy imports (about a second, not three)."""
    folder = tmp_path / "bad"
    folder.mkdir()
    (folder / "bad.inter").write_text("user_id:token\titem_id:token\ttimestamp:float\nu1\ti1\t1\nu1\ti2\n")
    code = (
        "import sys\n"
        "from recbole_lea.datasets.validate import check_run_inter\n"
        "from recbole_lea.errors import ConfigError\n"
        "try:\n"
        f"    check_run_inter('bad', {str(tmp_path)!r}, {{}})\n"
        "except ConfigError as e:\n"
        "    print('error:', e)\n"
        "heavy = [m for m in sys.modules if m in ('torch', 'pandas', 'sklearn') or m.startswith('recbole.')]\n"
        "print('heavy:', sorted(heavy))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert re.search(r"error: .*bad\.inter: line 3: 2 fields", out), out
    assert "heavy: []" in out, out


def test_valid_ids_and_fields_still_convert(tmp_path: Path) -> None:
    inter = tmp_path / "log.csv"
    inter.write_text('user_id,item_id,t\nu1,"a b",1\nu1,c\\d,2\nu2,"a b",3\n', encoding="utf-8")
    convert_csv(str(inter), None, "log", _opts(tmp_path), time_col="t")
    df = pd.read_csv(tmp_path / "out" / "log" / "log.inter", sep="\t", dtype=str, quoting=3)
    assert sorted(set(df["item_id:token"])) == ["a_b", "c\\d"]
