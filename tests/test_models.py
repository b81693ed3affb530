"""SNQN / SA2C and their LE variants inside RecBole: smoke runs, RL update rules, save/reload."""

from __future__ import annotations

import copy
import itertools
import math
import subprocess
import sys

import pytest
import torch
from recbole.data import data_preparation

from recbole_lea import registry
from recbole_lea.data.dataset import DONE_FIELD
from recbole_lea.data.split import training_row_mask
from recbole_lea.model.options import VARIANTS
from recbole_lea.quick_start import build_config, load_data_and_model, load_for_serving, run_recbole_lea
from recbole_lea.trainer import RLTrainer, get_trainer

BACKBONES = ["SASRec", "GRU4Rec"]


def _model_and_batch(name: str, cfg: dict, dataset: str = "tiny"):
    config = build_config(name, dataset, config_dict=cfg)
    ds = registry.create_dataset(config)
    train, _, test = data_preparation(config, ds)
    model = registry.get_model(name)(config, train._dataset)
    batch = next(iter(train))
    return config, model, batch, train, test


@pytest.mark.parametrize("model,backbone", list(itertools.product(["SNQN", "SA2C"], BACKBONES)))
def test_baseline_one_epoch(model: str, backbone: str, tiny_config: dict) -> None:
    result = run_recbole_lea(model, "tiny", config_dict=dict(tiny_config, backbone=backbone), saved=False)
    assert set(result["test_result"]) == {f"{m}@{k}" for m in ("hit", "ndcg") for k in (5, 10, 20)}
    assert all(0.0 <= v <= 1.0 for v in result["test_result"].values())
    terms = result["train_losses"][0]
    assert {"l_h", "l_p", "l_n", "phase"} <= set(terms)
    assert len(result["epoch_times"]) == 1


@pytest.mark.parametrize(
    "model,variant,backbone",
    list(itertools.product(["SNQN_LEA", "SA2C_LEA"], list(VARIANTS), BACKBONES)),
)
def test_lea_variant_one_epoch(model: str, variant: str, backbone: str, tiny_config: dict) -> None:
    cfg = dict(tiny_config, backbone=backbone, variant=variant)
    result = run_recbole_lea(model, "tiny", config_dict=cfg, saved=False)
    terms = result["train_losses"][0]
    flags = VARIANTS[variant]
    assert ("l_ah" in terms) == flags.l_ah
    assert ("l_aq" in terms) == flags.l_aq
    assert all(math.isfinite(v) for v in terms.values()) and terms["l_h"] > 0


def test_builtin_runs_through_same_entry(tiny_config: dict) -> None:
    result = run_recbole_lea("GRU4Rec", "tiny", config_dict=tiny_config, saved=False)
    assert "ndcg@10" in result["test_result"]
    assert result["train_losses"][0]["loss"] > 0


def test_training_row_mask_matches_recbole_split(tiny_root, tiny_config: dict) -> None:
    import pandas as pd

    config = build_config("SASRec", "tiny", config_dict=dict(tiny_config, MAX_ITEM_LIST_LENGTH=50))
    ds = registry.create_dataset(config)
    train, valid, test = ds.build()
    base = pd.read_csv(tiny_root / "tiny" / "tiny.inter", sep="\t")
    base.columns = [c.split(":")[0] for c in base.columns]
    mask = training_row_mask(base, "user_id", "timestamp")

    def keys(d, frame=None):  # (user, item, time) of every target row, raw tokens
        inter = d.inter_feat
        users = d.id2token(d.uid_field, inter[d.uid_field].numpy())
        items = d.id2token(d.iid_field, inter[d.iid_field].numpy())
        return sorted(zip(users, items, inter[d.time_field].numpy().tolist()))

    expected = sorted(zip(base.user_id[mask], base.item_id[mask], base.timestamp[mask].astype(float)))
    assert keys(train) == expected
    held = set(zip(base.user_id[~mask], base.item_id[~mask], base.timestamp[~mask].astype(float)))
    assert set(keys(valid)) | set(keys(test)) <= held


def test_done_marks_last_training_row_per_user(tiny_config: dict) -> None:
    config = build_config("SA2C", "tiny", config_dict=tiny_config)
    train = registry.create_dataset(config).build()[0]
    uid = train.inter_feat[train.uid_field]
    done = train.inter_feat[DONE_FIELD]
    assert int(done.sum()) == len(torch.unique(uid))
    for u in torch.unique(uid):
        rows = (uid == u).nonzero().flatten()
        assert done[rows[-1]] == 1.0 and done[rows[:-1]].sum() == 0


def test_double_q_updates_only_the_coin_network(tiny_config: dict) -> None:
    config, model, batch, _, _ = _model_and_batch("SNQN", tiny_config)
    trainer = RLTrainer(config, model)
    for _ in range(4):
        before = [copy.deepcopy(net.state_dict()) for net in model.nets]
        trainer.optimizer.zero_grad()
        model.calculate_loss(batch).backward()
        trainer.optimizer.step()
        main = model.last_main_idx
        after = [net.state_dict() for net in model.nets]
        assert all(torch.equal(before[1 - main][k], after[1 - main][k]) for k in before[1 - main])
        assert any(not torch.equal(before[main][k], after[main][k]) for k in before[main])


def test_advantage_zero_before_switch_and_clipped_after(tiny_config: dict) -> None:
    config, model, batch, _, _ = _model_and_batch("SA2C", dict(tiny_config, switch_step=2, advantage_clip=10.0))
    assert not model.in_phase_two()
    q_pos = torch.tensor([50.0, 0.0, 1.0])
    q_neg = torch.tensor([[0.0, 0.0], [5.0, 5.0], [0.0, 0.0]])
    adv = model.advantage(q_pos, q_neg)
    assert adv[0] == 10.0  # clipped above
    assert adv[1] == 0.0  # negative advantage clipped to 0
    assert adv[2] == pytest.approx(1.0 - 1.0 / 3)
    model.train()
    model.calculate_loss(batch)
    assert "advantage" not in model.diagnostic_terms  # phase 1: plain CE
    model.calculate_loss(batch)
    assert model.in_phase_two()
    model.calculate_loss(batch)
    assert "advantage" in model.diagnostic_terms and "advantage" not in model.loss_terms
    trainer = RLTrainer(config, model)
    assert trainer.optimizer.current is trainer.optimizer.second
    assert trainer.optimizer.second.param_groups[0]["lr"] == config["learning_rate_phase2"]


def _loss_with(model, batch, seed: int = 0) -> dict[str, float]:
    torch.manual_seed(seed)
    model.pop_loss_terms()
    loss = model.calculate_loss(batch)
    terms, _diagnostics = model.pop_loss_terms()
    terms["total"] = float(loss.detach())
    return terms


def test_each_flag_changes_only_its_term(tiny_config: dict) -> None:
    cfg = dict(tiny_config, hidden_dropout_prob=0.0, attn_dropout_prob=0.0)
    _, plain, batch, _, _ = _model_and_batch("SNQN_LEA", dict(cfg, variant="none"))
    _, sv0, _, _, _ = _model_and_batch("SNQN_LEA", dict(cfg, variant="sv", w_ah=0.0))
    _, sv1, _, _, _ = _model_and_batch("SNQN_LEA", dict(cfg, variant="sv", w_ah=0.5))
    _, q1, _, _, _ = _model_and_batch("SNQN_LEA", dict(cfg, variant="q", w_aq=0.5))
    for m in (sv0, sv1, q1):
        m.load_state_dict(plain.state_dict())
    for m in (plain, sv0, sv1, q1):
        m.train()
    base = _loss_with(plain, batch)
    t_sv0, t_sv1, t_q1 = _loss_with(sv0, batch), _loss_with(sv1, batch), _loss_with(q1, batch)
    assert t_sv0["total"] == pytest.approx(base["total"], abs=1e-6)  # w_ah=0 == no augmentation
    for t, extra in ((t_sv1, "l_ah"), (t_q1, "l_aq")):
        for k in ("l_h", "l_p", "l_n"):
            assert t[k] == pytest.approx(base[k], abs=1e-6)
        assert t[extra] > 0
        assert t["total"] == pytest.approx(base["total"] + t[extra], abs=1e-5)
    _, ler, _, _, _ = _model_and_batch("SNQN_LEA", dict(cfg, variant="LER"))
    ler.load_state_dict(plain.state_dict())
    ler.train()
    t_ler = _loss_with(ler, batch)
    assert t_ler["l_h"] == pytest.approx(base["l_h"], abs=1e-6)  # rewards touch only the Q terms
    assert t_ler["l_p"] != pytest.approx(base["l_p"], abs=1e-6)
    # shaped LE rewards at scale 0 with freshly sampled negatives are exactly SNQN's update
    _, ler0, _, _, _ = _model_and_batch("SNQN_LEA", dict(cfg, variant="LER", le_reward_scale=0.0))
    ler0.load_state_dict(plain.state_dict())
    ler0.train()
    t_ler0 = _loss_with(ler0, batch)
    for k in ("l_h", "l_p", "l_n", "total"):
        assert t_ler0[k] == pytest.approx(base[k], abs=1e-6)
    # the build's stored negative instead: another negative, another negative loss
    _, stored, _, _, _ = _model_and_batch(
        "SNQN_LEA", dict(cfg, variant="LER", le_reward_scale=0.0, le_negatives="stored")
    )
    stored.load_state_dict(plain.state_dict())
    stored.train()
    assert _loss_with(stored, batch)["l_n"] != pytest.approx(base["l_n"], abs=1e-6)


def test_le_state_reaches_q_head_not_ranking(tiny_config: dict) -> None:
    cfg = dict(tiny_config, variant="LES", hidden_dropout_prob=0.0, attn_dropout_prob=0.0)
    _, model, batch, _, _ = _model_and_batch("SA2C_LEA", cfg)
    model.eval()
    assert model.nets[0].q_head.in_features == cfg["hidden_size"] + cfg["le_state_dim"]
    assert model.nets[0].ce_head.in_features == cfg["hidden_size"]
    scores = model.full_sort_predict(batch)
    state = batch["le_state"].clone()
    batch.interaction["le_state"] = state + 5.0  # another LE state, same history
    assert torch.equal(scores, model.full_sort_predict(batch))
    batch.interaction["le_state"] = state
    h = model.nets[0].encoder(batch[model.ITEM_SEQ], batch[model.ITEM_SEQ_LEN])
    q1 = model.nets[0].q_head(model.q_state(h, state))
    q2 = model.nets[0].q_head(model.q_state(h, state - 5.0))
    assert not torch.allclose(q1, q2)


def test_shaped_reward_and_state_norm_use_training_rows(tiny_config: dict) -> None:
    _, model, batch, train, _ = _model_and_batch("SNQN_LEA", dict(tiny_config, variant="LESR", le_reward_scale=0.5))
    inter = train._dataset.inter_feat
    rows = inter["le_train"] > 0
    raw = torch.cat([inter["le_reward"][rows], inter["le_neg_reward"][rows]]).double()
    assert float(model.le_reward_stats[0]) == pytest.approx(float(raw.mean()), rel=1e-5)
    assert float(model.le_reward_stats[1]) == pytest.approx(float(raw.std()), rel=1e-5)
    # standardised LE states have mean 0 and std 1 per dimension over the training rows
    z = (inter["le_state"][rows] - model.le_state_mean) / model.le_state_std
    assert torch.allclose(z.mean(0), torch.zeros(z.shape[1]), atol=1e-4)
    assert torch.allclose(z.std(0), torch.ones(z.shape[1]), atol=1e-4)
    # shaped rewards: the behaviour reward moved by le_reward_scale per std of the LE score
    pos = model._reward(batch["le_reward"], 1.0)
    mean, std = model.le_reward_stats
    assert torch.allclose(pos, 1.0 + 0.5 * (batch["le_reward"] - mean) / std)
    model.le.le_reward_scale = 0.0
    assert torch.equal(model._reward(batch["le_neg_reward"], 0.0), torch.zeros_like(batch["le_neg_reward"]))


def _test_scores(model, test_data) -> torch.Tensor:
    model.eval()
    with torch.no_grad():
        return torch.cat([model.full_sort_predict(b[0]) for b in test_data])


@pytest.mark.parametrize("name", ["SA2C", "SA2C_LEA"])
def test_save_reload_gives_identical_scores(name: str, tiny_config: dict) -> None:
    result = run_recbole_lea(name, "tiny", config_dict=dict(tiny_config, epochs=2))
    config, model, _, _, _, test = load_data_and_model(result["model_file"])
    scores = _test_scores(model, test)
    _, model2, _, _, _, test2 = load_data_and_model(result["model_file"])
    assert torch.equal(scores, _test_scores(model2, test2))
    # the reloaded model reproduces the run's own test metrics
    trainer = get_trainer(config["MODEL_TYPE"], config["model"])(config, model)
    again = trainer.evaluate(test, load_best_model=False)
    for k, v in result["test_result"].items():
        assert again[k] == pytest.approx(v, abs=1e-4)
    # a fresh process (no RecBole Config built yet) reloads it too
    code = (
        "import sys; from recbole_lea.quick_start import load_data_and_model; "
        "print(load_data_and_model(sys.argv[1])[1].__class__.__name__)"
    )
    fresh = subprocess.run([sys.executable, "-c", code, result["model_file"]], capture_output=True, text=True)
    assert fresh.returncode == 0, fresh.stderr[-2000:]
    assert fresh.stdout.strip().splitlines()[-1] == name
    if name.endswith("_LEA"):
        # serving: no LE file, no LE field, same ranking
        _, served, ds, _, _, base_test = load_for_serving(result["model_file"])
        assert not any(f.startswith("le_") for f in ds.field2type)
        assert torch.equal(scores, _test_scores(served, base_test))


def test_target_values_read_at_argmax_equal_full_product(tiny_config: dict) -> None:
    _, model, batch, _, _ = _model_and_batch("SA2C_LEA", dict(tiny_config, variant="LES"))
    net = model.nets[1]
    state = torch.randn(7, net.q_head.in_features)
    actions = torch.randint(0, model.n_items, (7,))
    full = net.q_head(state).gather(1, actions.unsqueeze(1)).squeeze(1)
    assert torch.allclose(model._q_at(net.q_head, state, actions), full, atol=1e-5)


def test_fast_dropout_keeps_the_dropout_distribution(tiny_config: dict) -> None:
    from torch import nn

    from recbole_lea.model.backbones import FastDropout

    torch.manual_seed(0)
    drop = FastDropout(0.1).train()
    y = drop(torch.ones(400_000))
    kept = (y > 0).float().view(-1, 4)
    # each of the four 16-bit groups of a random word keeps 90% (binomial std ~0.001 per column)
    assert torch.allclose(kept.mean(0), torch.full((4,), 0.9), atol=0.005)
    assert float(y.max()) == pytest.approx(1 / 0.9) and float(y.mean()) == pytest.approx(1.0, abs=0.005)
    x = torch.randn(6, 5, requires_grad=True)
    out = drop(x)
    out.sum().backward()
    assert torch.equal(x.grad != 0, out != 0)  # gradient flows through kept elements only
    assert torch.equal(drop.eval()(x), x)
    _, fast, _, _, _ = _model_and_batch("SA2C", tiny_config)
    _, plain, _, _, _ = _model_and_batch("SA2C", dict(tiny_config, fast_dropout=False))
    kinds = {type(m) for m in fast.modules() if isinstance(m, nn.Dropout)}
    assert kinds == {FastDropout}
    assert {type(m) for m in plain.modules() if isinstance(m, nn.Dropout)} == {nn.Dropout}


@pytest.mark.parametrize("backbone", BACKBONES)
def test_tied_ce_head_scores_with_the_item_embedding(backbone: str, tiny_config: dict) -> None:
    cfg = dict(tiny_config, backbone=backbone, ce_head="tied", hidden_dropout_prob=0.0, attn_dropout_prob=0.0)
    _, model, batch, _, _ = _model_and_batch("SA2C", cfg)
    model.eval()
    net = model.nets[0]
    h = net.encoder(batch[model.ITEM_SEQ], batch[model.ITEM_SEQ_LEN])
    assert torch.allclose(model.full_sort_predict(batch), h @ net.encoder.item_embedding.weight.T)
    assert not list(net.ce_head.parameters(recurse=False))  # no weights of its own
    model.train()
    assert torch.isfinite(model.calculate_loss(batch))
