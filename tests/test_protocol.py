"""LEA under the paper's sequence protocol (issue 16): the split is a property of the data
(``split_seed``), the LE trains only on the training sequences and its fingerprint includes the
split, every interaction of a held-out sequence is scored."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from recbole_lea.data.split import sequence_parts
from recbole_lea.errors import ConfigError
from recbole_lea.le.model import LEModel
from recbole_lea.le.testing import save_tiny_llm, tiny_lea_options, write_tiny_dataset
from recbole_lea.quick_start import run_recbole_lea

RATIOS = [0.6, 0.2, 0.2]
SPLIT_SEED = 11


@pytest.fixture(scope="module")
def held_out_unique(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """A dataset whose valid and test SEQUENCES hold items that no training sequence holds."""
    root = tmp_path_factory.mktemp("seq")
    data = root / "data"
    df = write_tiny_dataset(data, n_users=24, min_len=4, max_len=9, seed=3)
    parts = sequence_parts(df["user_id"].to_numpy(), RATIOS, SPLIT_SEED)
    own = np.array([f"own{k}" for k in range(len(df))], dtype=object)
    df.loc[parts > 0, "item_id"] = own[parts > 0]  # every held-out interaction: an item of its own
    folder = data / "tiny"
    lines = (folder / "tiny.inter").read_text().splitlines()
    rows = [line.split("\t") for line in lines[1:]]
    for row, item in zip(rows, df["item_id"], strict=True):
        row[1] = item
    (folder / "tiny.inter").write_text("\n".join([lines[0], *("\t".join(r) for r in rows)]) + "\n")
    with open(folder / "tiny.item", "a") as fh:
        for item in df["item_id"][parts > 0]:
            fh.write(f"{item}\ta b\t1999\tdrama\n")
    options = tiny_lea_options(
        root,
        data,
        save_tiny_llm(root / "llm"),
        eval_protocol="sequence",
        sequence_split_ratios=RATIOS,
        split_seed=SPLIT_SEED,
    )
    return {"root": root, "data": data, "df": df, "parts": parts, "options": options}


def test_le_under_the_sequence_split_never_sees_a_held_out_sequence(
    held_out_unique: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    seen: list[np.ndarray] = []
    orig = LEModel.forward_chunks

    def spy(self, prefix, chunks):  # type: ignore[no-untyped-def]
        for c in chunks:
            seen.extend([np.asarray(c.items), np.asarray(c.branch_item)])
        return orig(self, prefix, chunks)

    monkeypatch.setattr(LEModel, "forward_chunks", spy)
    result = run_recbole_lea("SA2C_LEA", "tiny", config_dict=held_out_unique["options"], saved=False)
    le_dir = Path(result["le_dir"])
    item = pd.read_csv(held_out_unique["data"] / "tiny" / "tiny.item", sep="\t", dtype=str)
    own_idx = {i for i, t in enumerate(item["item_id:token"]) if t.startswith("own")}
    assert own_idx and not (set(np.concatenate(seen).tolist()) & own_idx)  # no training batch, no featurization
    lea = pd.read_csv(le_dir / "tiny-lea.inter", sep="\t", dtype=str)
    parts = held_out_unique["parts"]
    assert (lea["le_train:float"][parts > 0] == "0").all()  # held-out rows carry neutral values
    trained = lea[lea["le_train:float"] == "1"]
    for column in ("item_id:token", "le_neg_id:token", "le_aug_id:token"):
        assert not trained[column].str.startswith("own").any(), column
    cand = np.load(next((held_out_unique["root"] / "cache" / "stages").glob("candidates-*")) / "candidates.npy")
    assert not (set(cand[cand >= 0].tolist()) & own_idx)
    manifest = json.loads((le_dir / "manifest.json").read_text())
    assert manifest["split"] == {"protocol": "sequence", "ratios": RATIOS, "split_seed": SPLIT_SEED}
    # every interaction but the first of each held-out sequence is a query
    df = held_out_unique["df"]
    sizes = df.groupby("user_id").size()
    users = df["user_id"].to_numpy()
    expected = {name: int(sum(sizes[u] - 1 for u in set(users[parts == p]))) for name, p in (("valid", 1), ("test", 2))}
    assert result["n_queries"] == expected


def test_the_split_is_data_not_run(held_out_unique: dict[str, Any]) -> None:
    """Model seeds share one split and one LE; another split_seed is another LE, and a run that
    must not build one names the option that differs."""
    opts = held_out_unique["options"]
    a = run_recbole_lea("SA2C_LEA", "tiny", config_dict={**opts, "seed": 1}, saved=False)
    b = run_recbole_lea("SA2C_LEA", "tiny", config_dict={**opts, "seed": 2}, saved=False)
    assert a["le_dir"] == b["le_dir"] and a["n_queries"] == b["n_queries"]
    with pytest.raises(ConfigError, match=r"split_seed: 11 -> 12.*--build-le"):
        run_recbole_lea("SA2C_LEA", "tiny", config_dict={**opts, "split_seed": 12, "le_auto_build": False}, saved=False)
    with pytest.raises(ConfigError, match=r"eval_protocol: 'sequence' -> 'loo'"):
        run_recbole_lea(
            "SA2C_LEA", "tiny", config_dict={**opts, "eval_protocol": "loo", "le_auto_build": False}, saved=False
        )


def test_an_le_of_another_split_is_refused_through_le_dir(held_out_unique: dict[str, Any]) -> None:
    opts = held_out_unique["options"]
    le_dir = run_recbole_lea("SA2C_LEA", "tiny", config_dict=opts, saved=False)["le_dir"]
    loo = {**opts, "eval_protocol": "loo", "le_dir": le_dir}
    with pytest.raises(ConfigError, match=r"built for the split .*'sequence'.*this run uses \{'protocol': 'loo'\}"):
        run_recbole_lea("SA2C_LEA", "tiny", config_dict=loo, saved=False)


@pytest.mark.parametrize(
    ("model", "variant", "backbone"),
    [
        ("SNQN_LEA", "LER", "GRU4Rec"),
        ("SA2C_LEA", "LES", "GRU4Rec"),
        ("SNQN_LEA", "LEA", "SASRec"),
        ("SA2C_LEA", "LEASR", "SASRec"),
    ],
)
def test_every_variant_framework_and_backbone_runs_under_the_sequence_split(
    held_out_unique: dict[str, Any], model: str, variant: str, backbone: str
) -> None:
    """Each variant, each framework and each backbone at least once: all read the one LE of the
    split and score the same held-out queries, with HR/NDCG at 5, 10 and 20."""
    opts = held_out_unique["options"]
    shared = run_recbole_lea("SA2C_LEA", "tiny", config_dict=opts, saved=False)
    result = run_recbole_lea(model, "tiny", config_dict={**opts, "variant": variant, "backbone": backbone}, saved=False)
    assert (result["model"], result["config"]["variant"], result["config"]["backbone"]) == (model, variant, backbone)
    assert result["le_dir"] == shared["le_dir"]
    assert result["n_queries"] == shared["n_queries"]
    wanted = {f"{m}@{k}" for m in ("hit", "ndcg") for k in (5, 10, 20)}
    assert wanted <= set(result["test_result"]), sorted(result["test_result"])
