"""``recbole_lea.datasets.validate.check_atomic_inter``: one clear ConfigError per bad ``.inter`` file."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from recbole_lea.datasets import validate
from recbole_lea.datasets.validate import check_atomic_inter, read_atomic_header
from recbole_lea.errors import ConfigError

HEADER = "user_id:token\titem_id:token\ttimestamp:float\n"
FIELDS = {"user_id": "token", "item_id": "token", "timestamp": "float"}


def inter(tmp_path: Path, body: str | bytes, header: str = HEADER) -> Path:
    path = tmp_path / "ds.inter"
    data = body if isinstance(body, bytes) else body.encode("utf-8")
    path.write_bytes(header.encode("utf-8") + data)
    return path


def error(path: Path, fields: dict[str, str] = FIELDS) -> str:
    with pytest.raises(ConfigError) as err:
        check_atomic_inter(path, fields)
    msg = str(err.value)
    assert msg.startswith(f"{path}: ") and "; fix: " in msg, msg
    assert "\n" not in msg, msg  # one message, one line
    return msg


def test_a_good_file_passes(tmp_path: Path) -> None:
    path = inter(tmp_path, "1\t10\t5\n1\t11\t6.5\n\n2\t10\t1e9\r\n3\t12\t7")  # blank, CRLF and last line without \n
    check_atomic_inter(path, FIELDS)
    check_atomic_inter(path, {"user_id": "token"})  # only the loaded fields are checked


def test_missing_file(tmp_path: Path) -> None:
    msg = error(tmp_path / "nope" / "nope.inter")
    assert "atomic file not found" in msg and "python -m recbole_lea.datasets" in msg and "data_path" in msg


@pytest.mark.parametrize("content", [b"", b"\n", b"  \n\n"])
def test_empty_file(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "ds.inter"
    path.write_bytes(content)
    msg = error(path)
    assert "line 1: the file is empty" in msg and "user_id:token" in msg


@pytest.mark.parametrize("body", ["", "\n\n"])
def test_header_only(tmp_path: Path, body: str) -> None:
    msg = error(inter(tmp_path, body))
    assert "a header but no interactions" in msg and "one line per interaction" in msg


def test_a_line_missing_a_field(tmp_path: Path) -> None:
    msg = error(inter(tmp_path, "1\t10\t5\n1\t11\n2\t10\t7\n"))
    assert "line 3: 2 fields, fewer than the header's 3" in msg and "column mean" in msg
    assert "exactly 3 '\\t'-separated values" in msg


def test_a_line_with_an_extra_field(tmp_path: Path) -> None:
    msg = error(inter(tmp_path, "1\t10\t5\n1\t11\t6\t4.0\n"))
    assert "line 3: 4 fields, more than the header's 3" in msg


@pytest.mark.parametrize(
    ("row", "field", "problem"),
    [
        ("\t10\t5", "user_id", "empty value"),
        ("1\t \t5", "item_id", "empty value"),
        ("1\t10\t", "timestamp", "empty value"),
        ("NA\t10\t5", "user_id", "value 'NA', which pandas reads as missing"),
        ("1\tnull\t5", "item_id", "value 'null', which pandas reads as missing"),
    ],
)
def test_an_empty_value_in_a_loaded_field(tmp_path: Path, row: str, field: str, problem: str) -> None:
    msg = error(inter(tmp_path, f"1\t10\t5\n{row}\n"))
    assert f"line 3, field '{field}': {problem}" in msg and "give the line a value there" in msg


def test_an_empty_value_in_a_column_the_run_does_not_load_is_fine(tmp_path: Path) -> None:
    path = inter(tmp_path, "1\t10\t5\t\n2\t10\t6\t4\n", header=HEADER.rstrip("\n") + "\trating:float\n")
    check_atomic_inter(path, FIELDS)
    assert "line 2, field 'rating': empty value" in error(path, {**FIELDS, "rating": "float"})


@pytest.mark.parametrize("value", ["noon", "2024-01-01", "1,5", "inf", "-Infinity", "0x10"])
def test_a_non_numeric_float(tmp_path: Path, value: str) -> None:
    msg = error(inter(tmp_path, f"1\t10\t5\n1\t11\t{value}\n"))
    assert f"line 3, field 'timestamp': value {value!r} is not a finite number" in msg
    assert "--time-format" in msg
    assert "line 3, field 'timestamp': value 'nan', which pandas reads as missing" in error(
        inter(tmp_path, "1\t10\t5\n1\t11\tnan\n")
    )


def test_a_float_seq_field(tmp_path: Path) -> None:
    path = inter(
        tmp_path, "1\t10\t5\t0.5 1\n1\t11\t6\t\n1\t12\t7\t2 x\n", header=HEADER.rstrip("\n") + "\tw:float_seq\n"
    )
    assert "line 4, field 'w': value 'x' is not a finite number" in error(path, {**FIELDS, "w": "float_seq"})


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        ("user_id:token\titem_id:token\n", "the header has no field 'timestamp' (the run loads timestamp:float"),
        (
            "user_id:token\titem_id:token\ttime:float\n",
            "typed columns: ['user_id:token', 'item_id:token', 'time:float']",
        ),
        ("user_id:token\titem_id:token\ttimestamp\n", "line 1, column 3: header cell 'timestamp' is not name:type"),
        ("user_id,item_id,timestamp\n", "is not name:type (is the file separated by '\\t'?)"),
        ("user_id:token\titem_id:token\ttimestamp:int\n", "field 'timestamp' has type 'int', which RecBole does not"),
        ("user_id:token\titem_id:token\ttimestamp:token\n", "field 'timestamp' is typed token but the run needs float"),
        ("user_id:token\titem_id:token\tuser_id:token\n", "field 'user_id' appears twice"),
        ("user_id:token\titem_id:token\ttimestamp:float\r\n", "carriage return"),
        ("\ufeffuser_id:token\titem_id:token\ttimestamp:float\n", "byte-order mark"),
    ],
)
def test_a_header_lacking_a_needed_field_or_badly_typed(tmp_path: Path, header: str, expected: str) -> None:
    msg = error(inter(tmp_path, "1\t10\t5\n", header=header))
    assert "line 1" in msg and expected in msg


def test_the_fix_for_a_missing_field_names_the_options(tmp_path: Path) -> None:
    msg = error(inter(tmp_path, "1\t10\n", header="user_id:token\titem_id:token\n"))
    assert "add a column 'timestamp:float'" in msg and "TIME_FIELD" in msg


def test_a_value_starting_with_a_quote(tmp_path: Path) -> None:
    path = inter(tmp_path, '1\t10\t5\t"big\n1\t11\t6\tsmall\n', header=HEADER.rstrip("\n") + "\tnote:token_seq\n")
    msg = error(path)  # even in a column the run does not load: pandas tokenizes every column
    assert "line 2, column 4: value '\"big' starts with a double quote" in msg
    check_atomic_inter(
        inter(tmp_path, '1\t10\t5\tsay "hi"\n', header=HEADER.rstrip("\n") + "\tnote:token_seq\n"), FIELDS
    )


def test_bytes_that_are_not_utf8(tmp_path: Path) -> None:
    msg = error(inter(tmp_path, b"1\t10\t5\n1\t\xff\xfe\t6\n"))
    assert "line 3: bytes that are not UTF-8" in msg


def test_line_numbers_hold_across_blocks(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    rows = [f"u{i % 7}\ti{i % 13}\t{i}" for i in range(500)]
    rows[0] = "u0\t" + "x" * 300 + "\t0"  # a line longer than a block
    rows[321] = "u1\ti1"
    path = inter(tmp_path, "\n".join(rows) + "\n")
    messages = set()
    for block in (7, 64, 1000, 1 << 22):
        monkeypatch.setattr(validate, "_BLOCK", block)
        messages.add(error(path))
    assert len(messages) == 1 and "line 323: 2 fields" in messages.pop()
    rows[321] = "u1\ti1\tsoon"
    path = inter(tmp_path, "\n".join(rows))
    for block in (7, 64, 1 << 22):
        monkeypatch.setattr(validate, "_BLOCK", block)
        assert "line 323, field 'timestamp': value 'soon'" in error(path)


def test_fast_and_slow_paths_agree_on_every_kind_of_bad_line(tmp_path: Path) -> None:
    good = [f"{i % 5}\t{i % 9}\t{i}" for i in range(200)]
    bad_rows = ["1\t2", "1\t2\t3\t4", "\t2\t3", "1\tNA\t3", "1\t2\tx", "1\t2\tnan", "1\t \t3", "1\t2\t-inf", '"1\t2\t3']
    for bad in bad_rows:
        rows = [*good]
        rows[150] = bad
        msg = error(inter(tmp_path, "\n".join(rows) + "\n"))
        assert re.search(r": line 152[,:]", msg), (bad, msg)


def test_read_atomic_header(tmp_path: Path) -> None:
    path = inter(tmp_path, "", header="user_id:token\ttitle:token_seq\n")
    assert read_atomic_header(path) == {"user_id": "token", "title": "token_seq"}


def test_a_wrong_type_in_fields_is_the_callers_error(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="use one of"):
        check_atomic_inter(inter(tmp_path, "1\t2\t3\n"), {"timestamp": "int"})
