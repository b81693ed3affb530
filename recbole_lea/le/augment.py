"""Augmentation candidates (paper 3.4): the top-k of a backbone after an "early training stage".

RecBole's own built-in model (SASRec by default, with the recommenders' sizes: history 10, one
block, 64 units; `le_aug_backbone_config` overrides them) is trained for a few epochs through RecBole's
create_dataset / data_preparation / Trainer on the base dataset (train split only), then every
training row's history is ranked over the full item set.  Items that never occur in a training
stream are excluded from the candidates (their backbone embedding is untrained, and an item that
only appears as a valid/test target must never reach a training row's features). Under the
sequence split the backbone trains on the training sequences only.
"""

from __future__ import annotations

import logging
import tempfile
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from .config import LEConfig
from .data import BaseData, UserStream

logger = logging.getLogger(__name__)


def _recbole_config(base: BaseData, data_path: Path, cfg: LEConfig, device: torch.device, workdir: Path):
    from recbole.config import Config

    uid, iid, tf = cfg.USER_ID_FIELD, cfg.ITEM_ID_FIELD, cfg.TIME_FIELD
    cdict = {
        "data_path": str(data_path),
        "USER_ID_FIELD": uid,
        "ITEM_ID_FIELD": iid,
        "TIME_FIELD": tf,
        "load_col": {"inter": [uid, iid, tf]},
        "normalize_all": False,
        "epochs": cfg.le_aug_backbone_epochs,
        "train_neg_sample_args": None,
        "loss_type": "CE",
        "eval_args": {"split": {"LS": "valid_and_test"}, "order": "TO", "mode": "full", "group_by": "user"},
        "eval_step": 0,
        "stopping_step": 10**6,
        "show_progress": False,
        "seed": cfg.le_seed,
        "reproducibility": True,
        "use_gpu": device.type == "cuda",
        "gpu_id": "0",
        "checkpoint_dir": str(workdir / "saved"),
        "log_wandb": False,
        "state": "WARNING",
        # the recommenders' own backbone sizes (properties/sequential.yaml, paper 4.5): history 10,
        # 1 block, 1 head, 64 units (RecBole's defaults, history 50 and 2 blocks, cost several times more)
        "MAX_ITEM_LIST_LENGTH": 10,
        "train_batch_size": 256,
        "hidden_size": 64,
        "inner_size": 64,
        "n_layers": 1,
        "n_heads": 1,
        "embedding_size": 64,
        "num_layers": 1,
    }
    if base.split.get("protocol") == "sequence":
        # train on the training sequences only (never a valid/test sequence, as the LE itself)
        cdict.update(
            eval_protocol="sequence",
            sequence_split_ratios=list(base.split["ratios"]),
            split_seed=int(base.split["split_seed"]),
        )
    cdict.update(cfg.le_aug_backbone_config or {})
    return Config(model=cfg.le_aug_backbone, dataset=base.dataset, config_dict=cdict)


def backbone_candidates(
    base: BaseData,
    data_path: Path,
    streams: list[UserStream],
    pool: np.ndarray,
    cfg: LEConfig,
    device: torch.device,
) -> tuple[list[np.ndarray], dict[str, float]]:
    """Per stream: [n-1, topk] LE item indices (candidates for the target of every step t)."""
    try:
        from recbole_lea import compat

        compat.apply()  # RecBole's SINE import switches on autograd anomaly detection
    except ImportError:
        pass
    import logging as _logging
    import time

    from recbole.data import create_dataset, data_preparation
    from recbole.trainer import Trainer
    from recbole.utils import get_model, init_seed

    # RecBole's dataset and trainer log every step at INFO on the root logger; quieten it for the
    # backbone's training only, so the LE build's own stage lines still print afterwards
    root = _logging.getLogger()
    root_level = root.level
    with tempfile.TemporaryDirectory() as wd:
        try:
            config = _recbole_config(base, data_path, cfg, device, Path(wd))
            init_seed(config["seed"], config["reproducibility"])
            root.setLevel(_logging.WARNING)
            if base.split.get("protocol") == "sequence":
                from recbole_lea.data.dataset import RLSequentialDataset

                dataset = RLSequentialDataset(config)  # splits by whole sequences (split_seed)
            else:
                dataset = create_dataset(config)
            train_data, _valid, _test = data_preparation(config, dataset)
            model = get_model(config["model"])(config, train_data._dataset).to(config["device"])
            trainer = Trainer(config, model)
            t0 = time.time()
            logger.info("candidates: training %s for %d epoch(s)", cfg.le_aug_backbone, cfg.le_aug_backbone_epochs)
            trainer.fit(train_data, valid_data=None, saved=False, show_progress=False)
            fit_s = time.time() - t0
        finally:
            root.setLevel(root_level)
    model.eval()
    max_len = config["MAX_ITEM_LIST_LENGTH"]
    raw = np.asarray(base.item_ids, dtype=object)
    # LE item index -> RecBole internal id (only items of the .inter are known to RecBole) and back
    in_inter = np.unique(np.concatenate([s.items for s in streams])) if streams else np.zeros(0, np.int64)
    le2rb = torch.zeros(len(raw), dtype=torch.long)
    if len(in_inter):
        le2rb[torch.from_numpy(in_inter)] = torch.as_tensor(
            np.asarray(dataset.token2id(cfg.ITEM_ID_FIELD, list(raw[in_inter]))), dtype=torch.long
        ).reshape(-1)
    rb2le = torch.full((dataset.item_num,), -1, dtype=torch.long)
    rb2le[le2rb[torch.from_numpy(in_inter)]] = torch.from_numpy(in_inter)
    allowed = torch.full((dataset.item_num,), float("-inf"))
    allowed[le2rb[torch.from_numpy(pool)]] = 0.0
    k = min(cfg.le_aug_topk, len(pool))
    dev = config["device"]
    out: list[np.ndarray] = []
    hist, lens = [], []
    for s in streams:
        rb_items = le2rb[torch.from_numpy(s.items)]
        for t in range(len(s.items) - 1):
            h = rb_items[max(0, t + 1 - max_len) : t + 1]
            row = torch.zeros(max_len, dtype=torch.long)
            row[: len(h)] = h
            hist.append(row)
            lens.append(len(h))
        out.append(np.zeros((len(s.items) - 1, k), dtype=np.int64))
    if hist:
        from recbole.data.interaction import Interaction

        H = torch.stack(hist)
        L = torch.tensor(lens)
        tops = []
        with torch.no_grad():
            for i in tqdm(range(0, len(H), 1024), desc="candidates (top-k of each row)", unit="batch", mininterval=5):
                inter = Interaction({model.ITEM_SEQ: H[i : i + 1024], model.ITEM_SEQ_LEN: L[i : i + 1024]}).to(dev)
                scores = model.full_sort_predict(inter).view(len(inter), -1).float().cpu() + allowed
                tops.append(scores.topk(k, dim=1).indices)
        top = rb2le[torch.cat(tops)].numpy()
        if (top < 0).any():
            raise RuntimeError("backbone proposed an item outside the training pool")
        pos = 0
        for u, s in enumerate(streams):
            m = len(s.items) - 1
            out[u][:] = top[pos : pos + m]
            pos += m
    return out, {"backbone_fit_s": fit_s, "backbone": cfg.le_aug_backbone}
