"""Shared machinery of SNQN / SA2C and their LE variants.

One class, :class:`DoubleQRecommender`, implements the supervised + double-Q update of the
original SNQN/SA2C code (Xin et al., WSDM'22) and the LE extensions of LEA (Wang et al.,
SIGIR'24, Algorithm 1, Eq. 4, 9-15). Each public model file (``snqn.py``, ``sa2c.py``,
``snqn_lea.py``, ``sa2c_lea.py``) is a thin subclass that fixes the framework and whether LE
inputs are allowed, and documents its deviations.

Per training step (CleanRL style: targets under ``torch.no_grad()``, every term named and logged):

1. a fair coin picks the *main* network of the two complete copies; the other gives targets;
2. states: ``s_t = G(x_1..x_t)`` and ``s_{t+1} = G(x_1..x_{t+1})`` (built from ``item_id_list``
   + ``item_id``), optionally concatenated with (or replaced by) the LE state (Eq. 3/4);
3. positive TD: ``r + gamma * (1 - done) * Q'(s_{t+1}, argmax_a Q(s_{t+1}, a))``;
   negative TD (each sampled negative): ``r_neg + gamma * Q'(s_t, argmax_a Q(s_t, a))`` (a
   negative action does not move the user);
4. supervised CE on the true next item; SA2C after ``switch_step`` weights it by the advantage
   ``sg(Q(s,a)) - mean(sg(Q(s, {a} + negatives)))`` clipped to [0, 10] (Eq. 11 with one negative);
5. LEA: ``w_ah`` * CE on the LE's augmented action (Eq. 13) and ``w_aq`` * its TD loss with the
   next state (Eq. 14), summed over the rows that have one and divided by the batch size.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from recbole.model.abstract_recommender import SequentialRecommender
from recbole.utils import InputType
from torch import nn

from recbole_lea.data.dataset import DONE_FIELD
from recbole_lea.errors import ConfigError
from recbole_lea.model.backbones import BACKBONES, build_encoder

FRAMEWORKS = ("SNQN", "SA2C")
STATE_MODES = ("none", "concat", "only")
REWARD_TRANSFORMS = ("shaped", "sigmoid", "raw")
LE_NEGATIVES = ("sampled", "stored", "both")
CE_HEADS = ("linear", "tied")


@dataclass(frozen=True)
class LEFlags:
    """Which LE inputs a run uses (the paper's variants are presets over these)."""

    le_reward: bool = False  # LER: rewards r^e from the LE reward model
    le_state: str = "none"  # LES (concat, Eq. 4) / LES' (only, Eq. 3) / none
    aug_sv: bool = False  # L_ah: supervised loss on the LE-augmented action (Eq. 13)
    aug_q: bool = False  # L_aq: TD loss on the LE-augmented action (Eq. 14)

    @property
    def any(self) -> bool:
        return self.le_reward or self.le_state != "none" or self.aug_sv or self.aug_q


#: the paper's variants (section 4.3, Tables 2-5) as presets over the explicit flags
VARIANTS: dict[str, LEFlags] = {
    "none": LEFlags(),
    "LER": LEFlags(le_reward=True),
    "LES": LEFlags(le_state="concat"),
    "LES'": LEFlags(le_state="only"),
    "LESR": LEFlags(le_reward=True, le_state="concat"),
    "LEA": LEFlags(aug_sv=True, aug_q=True),
    "LEAR": LEFlags(le_reward=True, aug_sv=True, aug_q=True),
    "LEAS": LEFlags(le_state="concat", aug_sv=True, aug_q=True),
    "LEASR": LEFlags(le_reward=True, le_state="concat", aug_sv=True, aug_q=True),
    "LEAS'R": LEFlags(le_reward=True, le_state="only", aug_sv=True, aug_q=True),
    "sv": LEFlags(aug_sv=True),
    "q": LEFlags(aug_q=True),
    "sv+q": LEFlags(aug_sv=True, aug_q=True),
}
#: spellings without an apostrophe for shells
VARIANT_ALIASES = {"LESp": "LES'", "LES_prime": "LES'", "LEASpR": "LEAS'R", "LEAS_primeR": "LEAS'R"}


def resolve_variant(name: str) -> str:
    name = VARIANT_ALIASES.get(name, name)
    if name not in VARIANTS:
        raise ConfigError(
            f"Unknown variant '{name}' (option `variant`): choose one of {', '.join(VARIANTS)} "
            f"(shell-friendly aliases: {', '.join(VARIANT_ALIASES)}), or `custom` with explicit "
            "flags le_reward / le_state / aug_sv / aug_q."
        )
    return name


class TiedHead(nn.Module):
    """Supervised head sharing the item embedding, as RecBole's SASRec scores: ``h E^T``."""

    def __init__(self, embedding: nn.Embedding) -> None:
        super().__init__()
        self.embedding = embedding
        self.in_features: int = embedding.embedding_dim

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return h @ self.embedding.weight.T  # [B N]


class QNetwork(nn.Module):
    """One complete network: backbone G, supervised head (Eq. 7) and Q head (Eq. 9)."""

    def __init__(self, backbone: str, n_items: int, max_len: int, q_in: int, config) -> None:  # type: ignore[no-untyped-def]
        super().__init__()
        self.encoder = build_encoder(backbone, n_items, max_len, config)
        hidden = self.encoder.hidden_size
        ce_head = config["ce_head"] or "linear"
        if ce_head not in CE_HEADS:
            raise ConfigError(f"Unknown `ce_head` '{ce_head}': choose one of {', '.join(CE_HEADS)}.")
        if ce_head == "tied":
            self.ce_head: nn.Module = TiedHead(self.encoder.item_embedding)  # h E^T
        else:
            self.ce_head = nn.Linear(hidden, n_items)  # W_u h + b_u
        self.q_head = nn.Linear(q_in, n_items)  # W_q s + b_q
        for head in (self.ce_head, self.q_head):
            if isinstance(head, nn.Linear):
                nn.init.normal_(head.weight, std=config["initializer_range"])
                nn.init.zeros_(head.bias)


class DoubleQRecommender(SequentialRecommender):
    """Supervised sequential model + double-Q head (SNQN / SA2C), with optional LE inputs."""

    input_type = InputType.POINTWISE
    #: set by subclasses
    framework: str = "SNQN"
    allows_le: bool = False

    def __init__(self, config, dataset) -> None:  # type: ignore[no-untyped-def]
        super().__init__(config, dataset)

        # load parameters info
        self.backbone_name: str = config["backbone"]
        if self.backbone_name not in BACKBONES:
            raise ConfigError(
                f"Unknown backbone '{self.backbone_name}' (option `backbone`): choose one of {', '.join(BACKBONES)}."
            )
        self.gamma: float = float(config["gamma"])
        self.neg_num: int = int(config["neg_num"])
        self.q_weight: float = float(config["q_weight"])
        self.reward_click: float = float(config["reward_click"])
        self.reward_negative: float = float(config["reward_negative"])
        self.use_done: bool = bool(config["use_done"])
        self.target_dropout: bool = bool(config["target_dropout"])
        self.switch_step: int | None = int(config["switch_step"]) if self.framework == "SA2C" else None
        self.adv_clip: tuple[float, float] = (0.0, float(config["advantage_clip"] or 10.0))
        if self.neg_num < 1:
            raise ConfigError(f"Option `neg_num` must be >= 1, got {self.neg_num}.")

        # LE options
        self.flags = self._read_flags(config)
        self.le_state_dim: int = int(config["le_state_dim"] or 0) if self.flags.le_state != "none" else 0
        self.w_ah: float = float(config["w_ah"] or 0.0) if self.flags.aug_sv else 0.0
        self.w_aq: float = float(config["w_aq"] or 0.0) if self.flags.aug_q else 0.0
        self.reward_transform: str = config["le_reward_transform"] or "shaped"
        if self.reward_transform not in REWARD_TRANSFORMS:
            raise ConfigError(
                f"Unknown `le_reward_transform` '{self.reward_transform}': choose one of "
                f"{', '.join(REWARD_TRANSFORMS)}."
            )
        scale = config["le_reward_scale"]
        self.reward_scale: float = 0.5 if scale is None else float(scale)
        self.state_norm: bool = config["le_state_norm"] is not False
        self.le_negatives: str = config["le_negatives"] or "sampled"
        if self.le_negatives not in LE_NEGATIVES:
            raise ConfigError(f"Unknown `le_negatives` '{self.le_negatives}': choose one of {', '.join(LE_NEGATIVES)}.")
        # statistics of the LE fields over the training rows (buffers: saved with the model, so a
        # reloaded model needs no LE file): mean/std of the raw reward scores, per-dim of the state
        self.register_buffer("le_reward_stats", torch.tensor([0.0, 1.0]))  # [2] mean, std
        self.register_buffer("le_neg_score_mean", torch.zeros(()))  # mean raw score of LE negatives
        self.register_buffer("le_state_mean", torch.zeros(self.le_state_dim))  # [d]
        self.register_buffer("le_state_std", torch.ones(self.le_state_dim))  # [d]
        if self.flags.any and not config["le_serving"]:
            self._check_le_fields(dataset)
            self._fit_le_statistics(dataset)

        # define layers: two complete networks (double Q-learning, no lagged copy)
        hidden = config["hidden_size"] if self.backbone_name == "SASRec" else config["embedding_size"]
        q_in = {"none": hidden, "concat": hidden + self.le_state_dim, "only": self.le_state_dim}[self.flags.le_state]
        self.nets = nn.ModuleList(
            QNetwork(self.backbone_name, self.n_items, self.max_seq_length, q_in, config) for _ in range(2)
        )
        # step counter for SA2C's phase switch (saved with the model)
        self.register_buffer("global_step", torch.zeros((), dtype=torch.long))
        #: sums of each named loss term since the trainer last read them
        self.loss_terms: dict[str, float] = {}
        self._loss_batches = 0

    # ------------------------------------------------------------------ options
    def _read_flags(self, config) -> LEFlags:  # type: ignore[no-untyped-def]
        if not self.allows_le:
            return LEFlags()
        variant = config["variant"] or "LEASR"
        if variant == "custom":
            flags = LEFlags()
        else:
            flags = VARIANTS[resolve_variant(variant)]
        explicit = {k: config[k] for k in ("le_reward", "aug_sv", "aug_q", "le_state") if config[k] is not None}
        state = explicit.get("le_state", flags.le_state)
        if state not in STATE_MODES:
            raise ConfigError(f"Unknown `le_state` '{state}': choose one of {', '.join(STATE_MODES)}.")
        return LEFlags(
            le_reward=bool(explicit.get("le_reward", flags.le_reward)),
            le_state=state,
            aug_sv=bool(explicit.get("aug_sv", flags.aug_sv)),
            aug_q=bool(explicit.get("aug_q", flags.aug_q)),
        )

    def required_le_fields(self) -> list[str]:
        fields = ["le_train"]
        if self.flags.le_reward:
            fields += ["le_reward", "le_neg_id", "le_neg_reward"]
        if self.flags.le_state != "none":
            fields += ["le_state", "le_next_state"]
        if self.flags.aug_sv or self.flags.aug_q:
            fields += ["le_aug_id", "le_aug_mask"]
        if self.flags.aug_q and self.flags.le_reward:
            fields += ["le_aug_reward"]
        return fields

    def _check_le_fields(self, dataset) -> None:  # type: ignore[no-untyped-def]
        present = set(dataset.field2type)
        missing = [f for f in self.required_le_fields() if f not in present]
        if missing:
            raise ConfigError(
                f"Dataset '{dataset.dataset_name}' lacks the LE field(s) {', '.join(missing)} "
                f"needed by {type(self).__name__} with flags {self.flags}. Build them with "
                f"`python run_recbole_lea.py --build-le --dataset=<base dataset>`."
            )
        if self.flags.le_state != "none":
            dim = dataset.field2seqlen["le_state"]
            if dim != self.le_state_dim:
                raise ConfigError(
                    f"Option `le_state_dim` is {self.le_state_dim} but the LE dataset's le_state "
                    f"vectors have {dim} dimensions: set --le_state_dim={dim} or rebuild the LE."
                )

    @torch.no_grad()
    def _fit_le_statistics(self, dataset) -> None:  # type: ignore[no-untyped-def]
        """Reward and state statistics over the rows that carry LE values (``le_train`` = 1)."""
        inter = dataset.inter_feat
        rows = inter["le_train"] > 0  # [R]
        if not bool(rows.any()):
            raise ConfigError(
                f"Dataset '{dataset.dataset_name}' has no training row with LE values (le_train = 1): "
                "rebuild the LE with `python run_recbole_lea.py --build-le --dataset=<base dataset>`."
            )
        if self.flags.le_reward:
            raw = torch.cat([inter["le_reward"][rows], inter["le_neg_reward"][rows]]).double()  # [2R']
            self.le_reward_stats.copy_(torch.stack([raw.mean(), raw.std().clamp(min=1e-6)]))
            self.le_neg_score_mean.copy_(inter["le_neg_reward"][rows].double().mean())
        if self.flags.le_state != "none":
            states = inter["le_state"][rows].double()  # [R' d]
            self.le_state_mean.copy_(states.mean(0))
            self.le_state_std.copy_(states.std(0).clamp(min=1e-6))

    # ------------------------------------------------------------------ states
    def _next_sequence(
        self, item_seq: torch.Tensor, item_seq_len: torch.Tensor, item: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """History including the current item: append at ``len`` or, when full, shift left."""
        B, L = item_seq.shape
        full = item_seq_len >= L  # [B]
        shifted = torch.cat([item_seq[:, 1:], item.unsqueeze(1)], dim=1)  # [B L]
        appended = item_seq.clone()
        pos = item_seq_len.clamp(max=L - 1)
        appended[torch.arange(B, device=item_seq.device), pos] = item
        next_seq = torch.where(full.unsqueeze(1), shifted, appended)  # [B L]
        next_len = (item_seq_len + 1).clamp(max=L)  # [B]
        return next_seq, next_len

    def _q_state(self, h: torch.Tensor, le_state: torch.Tensor | None) -> torch.Tensor:
        if self.flags.le_state == "none":
            return h  # [B H]
        assert le_state is not None
        if self.state_norm:
            le_state = (le_state - self.le_state_mean) / self.le_state_std  # [B d]
        if self.flags.le_state == "only":
            return le_state  # [B d]
        return torch.cat([h, le_state], dim=-1)  # [B H+d]

    @contextmanager
    def _dropout(self, enabled: bool) -> Iterator[None]:
        """Run the networks with dropout on (training mode) or off for the block."""
        was_training = self.training
        for net in self.nets:
            net.train(was_training and enabled)
        try:
            yield
        finally:
            for net in self.nets:
                net.train(was_training)

    @staticmethod
    def _q_at(head: nn.Linear, state: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        """``head(state)[i, actions[i]]`` without the full product over all items, [B]."""
        return (state * head.weight[actions]).sum(-1) + head.bias[actions]

    def _reward(self, raw: torch.Tensor, behaviour: float) -> torch.Tensor:
        """LE reward score -> reward. ``shaped``: the behaviour reward plus ``le_reward_scale``
        times the score standardised over the training rows; ``sigmoid`` / ``raw``: the score alone."""
        if self.reward_transform == "shaped":
            mean, std = self.le_reward_stats
            return behaviour + self.reward_scale * (raw - mean) / std
        return torch.sigmoid(raw) if self.reward_transform == "sigmoid" else raw

    def _sample_negatives(self, pos: torch.Tensor, k: int) -> torch.Tensor:
        """Uniform over all items (ids 1..n_items-1), resampled where equal to the positive."""
        neg = torch.randint(1, self.n_items, (pos.size(0), k), device=pos.device)  # [B K]
        clash = neg == pos.unsqueeze(1)
        while clash.any():
            neg[clash] = torch.randint(1, self.n_items, (int(clash.sum()),), device=pos.device)
            clash = neg == pos.unsqueeze(1)
        return neg

    # ------------------------------------------------------------------ contract
    def forward(self, item_seq: torch.Tensor, item_seq_len: torch.Tensor) -> torch.Tensor:
        """Supervised ranking scores of network 1 (what serving uses), [B n_items]."""
        h = self.nets[0].encoder(item_seq, item_seq_len)  # [B H]
        return self.nets[0].ce_head(h)  # [B N]

    def in_phase_two(self) -> bool:
        return self.switch_step is not None and int(self.global_step) >= self.switch_step

    @torch.no_grad()
    def advantage(self, q_pos: torch.Tensor, q_neg: torch.Tensor) -> torch.Tensor:
        """SA2C's advantage ``sg(Q(s,a)) - mean(sg(Q(s, {a} + negatives)))`` clipped, [B]."""
        q_all = torch.cat([q_pos.unsqueeze(1), q_neg], dim=1)  # [B 1+K]
        return (q_pos - q_all.mean(1)).clamp(*self.adv_clip)

    def calculate_loss(self, interaction) -> torch.Tensor:  # type: ignore[no-untyped-def]
        item_seq = interaction[self.ITEM_SEQ]  # [B L]
        item_seq_len = interaction[self.ITEM_SEQ_LEN]  # [B]
        pos = interaction[self.ITEM_ID]  # [B]
        B = pos.size(0)
        device = pos.device
        done = (
            interaction[DONE_FIELD] if (self.use_done and DONE_FIELD in interaction) else torch.zeros(B, device=device)
        )
        le_state = interaction["le_state"] if self.flags.le_state != "none" else None  # [B d]
        le_next_state = interaction["le_next_state"] if self.flags.le_state != "none" else None

        # coin: which network is trained this step (Algorithm 1, lines 7-16)
        main_idx = int(torch.randint(0, 2, (1,)).item())
        main, target = self.nets[main_idx], self.nets[1 - main_idx]
        self.last_main_idx = main_idx

        # rewards and negatives
        if self.flags.le_reward:
            r_pos = self._reward(interaction["le_reward"], self.reward_click)  # [B]
            negs, r_negs = [], []
            if self.le_negatives in ("sampled", "both"):
                # fresh uniform negatives each step, as SNQN/SA2C; the LE scored none of them, so
                # each gets the reward of the LE's mean negative score
                negs.append(self._sample_negatives(pos, self.neg_num))  # [B K]
                fill = self._reward(self.le_neg_score_mean, self.reward_negative)
                r_negs.append(fill.expand(B, self.neg_num))
            if self.le_negatives in ("stored", "both"):
                negs.append(interaction["le_neg_id"].unsqueeze(1))  # [B 1] the build's negative
                r_negs.append(self._reward(interaction["le_neg_reward"], self.reward_negative).unsqueeze(1))
            neg, r_neg = torch.cat(negs, dim=1), torch.cat(r_negs, dim=1)  # [B K'] x 2
        else:
            r_pos = torch.full((B,), self.reward_click, device=device)
            neg = self._sample_negatives(pos, self.neg_num)  # [B K]
            r_neg = torch.full(neg.shape, self.reward_negative, device=device)

        h = main.encoder(item_seq, item_seq_len)  # [B H]
        logits = main.ce_head(h)  # [B N]
        q = main.q_head(self._q_state(h, le_state))  # [B N]
        next_seq, next_len = self._next_sequence(item_seq, item_seq_len, pos)

        # TD targets (double Q-learning); dropout in these passes only with `target_dropout`
        with torch.no_grad(), self._dropout(self.target_dropout):
            q_next_main = main.q_head(self._q_state(main.encoder(next_seq, next_len), le_next_state))
            # The target network is read only at the main network's argmax actions, so it needs no
            # full [B N] product: current and next states in one batch of 2B, then one row each.
            h_tgt = target.encoder(torch.cat([item_seq, next_seq]), torch.cat([item_seq_len, next_len]))
            le_both = None if le_state is None else torch.cat([le_state, le_next_state])  # type: ignore[list-item]
            actions = torch.cat([q.detach().argmax(1), q_next_main.argmax(1)])  # [2B]
            v_cur, v_next = self._q_at(target.q_head, self._q_state(h_tgt, le_both), actions).split(B)  # [B] x 2
            y_pos = r_pos + self.gamma * (1.0 - done) * v_next  # [B]
            y_neg = r_neg + self.gamma * v_cur.unsqueeze(1)  # [B K]

        q_pos = q.gather(1, pos.unsqueeze(1)).squeeze(1)  # [B]
        q_neg = q.gather(1, neg)  # [B K]
        loss_q_pos = 0.5 * (y_pos - q_pos).pow(2)  # [B]
        loss_q_neg = 0.5 * (y_neg - q_neg).pow(2).sum(1)  # [B]
        ce = F.cross_entropy(logits, pos, reduction="none")  # [B]

        terms: dict[str, torch.Tensor] = {}
        if self.in_phase_two():
            advantage = self.advantage(q_pos, q_neg)  # [B]
            terms["ce"] = (ce * advantage).mean()
            terms["advantage"] = advantage.mean().detach()
        else:
            terms["ce"] = ce.mean()
        terms["q_pos"] = self.q_weight * loss_q_pos.mean()
        terms["q_neg"] = self.q_weight * loss_q_neg.mean()

        if self.flags.aug_sv or self.flags.aug_q:
            aug = interaction["le_aug_id"]  # [B]
            mask = interaction["le_aug_mask"] * interaction["le_train"]  # [B]
            # mean over the batch, as if every row were augmented (Eq. 15): an augmented label
            # weighs w_ah relative to a true one whatever share of rows is augmented
            n_aug = float(B)
            if self.flags.aug_sv:
                ce_aug = F.cross_entropy(logits, aug, reduction="none")  # [B]
                terms["aug_sv"] = self.w_ah * (ce_aug * mask).sum() / n_aug
            if self.flags.aug_q:
                r_aug = (
                    self._reward(interaction["le_aug_reward"], self.reward_click)
                    if self.flags.le_reward
                    else torch.full((B,), self.reward_click, device=device)
                )
                with torch.no_grad():
                    y_aug = r_aug + self.gamma * v_next  # the augmented action moves the user
                q_aug = q.gather(1, aug.unsqueeze(1)).squeeze(1)
                terms["aug_q"] = self.w_aq * (0.5 * (y_aug - q_aug).pow(2) * mask).sum() / n_aug

        loss = sum(v for k, v in terms.items() if k != "advantage")
        if self.training:
            self.global_step += 1
            self._log_terms(terms)
        return loss  # type: ignore[return-value]

    def _log_terms(self, terms: dict[str, torch.Tensor]) -> None:
        for name, value in terms.items():
            self.loss_terms[name] = self.loss_terms.get(name, 0.0) + float(value.detach())
        self._loss_batches += 1

    def pop_loss_terms(self) -> dict[str, float]:
        """Mean of each named term since the last call (read by the trainer once per epoch)."""
        n = max(self._loss_batches, 1)
        out = {k: v / n for k, v in self.loss_terms.items()}
        self.loss_terms, self._loss_batches = {}, 0
        return out

    def predict(self, interaction) -> torch.Tensor:  # type: ignore[no-untyped-def]
        scores = self.forward(interaction[self.ITEM_SEQ], interaction[self.ITEM_SEQ_LEN])  # [B N]
        return scores.gather(1, interaction[self.ITEM_ID].unsqueeze(1)).squeeze(1)  # [B]

    def full_sort_predict(self, interaction) -> torch.Tensor:  # type: ignore[no-untyped-def]
        return self.forward(interaction[self.ITEM_SEQ], interaction[self.ITEM_SEQ_LEN])  # [B N]
