"""The LLM environment's feedback inside an RL recommender (LEA, Wang et al., SIGIR'24).

:class:`LEFeedback` is mixed into SNQN and SA2C to make ``SNQN_LEA`` and ``SA2C_LEA``. It fills
the hooks of :class:`~recbole_lea.model.rl_base.DoubleQRecommender` from the LE atomic fields
(``recbole_lea.data.le_fields``) that the LE build writes:

- rewards r^e of the LE reward model (Eq. 5) for the positive and the negatives (LER);
- the LE state s^e beside (Eq. 4, LES) or instead of (Eq. 3, LES') the backbone's ``h_t`` in the
  Q head's input;
- the augmented action a^e: ``l_ah`` = CE on it (Eq. 13) and ``l_aq`` = its TD error with the
  next state (Eq. 14), weighted by ``w_ah`` / ``w_aq`` (Eq. 15).

The paper's variants are presets (:data:`VARIANTS`) over four flags; explicit flags override a
preset. What the paper leaves open (how scores become rewards, which negatives carry LE rewards,
the state's scale) are options here; the model docstrings say which default was chosen and why.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from recbole_lea.data.le_fields import LE_FIELD_NAMES
from recbole_lea.errors import ConfigError
from recbole_lea.model.options import (
    LEFeedbackOptions,
    flags_of,
)
from recbole_lea.model.rl_base import read_options


class LEFeedback:
    """Mixin over a :class:`~recbole_lea.model.rl_base.DoubleQRecommender` subclass: LE rewards,
    states and augmented actions through its hooks."""

    def setup_options(self, config, dataset) -> None:  # type: ignore[no-untyped-def]
        super().setup_options(config, dataset)  # type: ignore[misc]
        self.le: LEFeedbackOptions = read_options(LEFeedbackOptions, config)  # type: ignore[assignment]
        self.flags = flags_of(self.le)
        self.le_state_dim: int = int(config["le_state_dim"] or 0) if self.flags.le_state != "none" else 0
        self.w_ah: float = self.le.w_ah if self.flags.l_ah else 0.0
        self.w_aq: float = self.le.w_aq if self.flags.l_aq else 0.0
        # statistics of the LE fields over the training rows (buffers: saved with the model, so a
        # reloaded model needs no LE file): mean/std of the raw reward scores, per-dim of the state
        self.register_buffer("le_reward_stats", torch.tensor([0.0, 1.0]))  # type: ignore[attr-defined]  # [2]
        self.register_buffer("le_neg_score_mean", torch.zeros(()))  # type: ignore[attr-defined]
        self.register_buffer("le_state_mean", torch.zeros(self.le_state_dim))  # type: ignore[attr-defined]  # [d]
        self.register_buffer("le_state_std", torch.ones(self.le_state_dim))  # type: ignore[attr-defined]  # [d]
        if self.flags.any and not self.le.le_serving:
            self._check_le_fields(dataset)
            self._fit_le_statistics(dataset)

    # ------------------------------------------------------------------ data
    def required_le_fields(self) -> list[str]:
        fields = ["le_train"]
        if self.flags.le_reward:
            fields += ["le_reward", "le_neg_id", "le_neg_reward"]
        if self.flags.le_state != "none":
            fields += ["le_state", "le_next_state"]
        if self.flags.l_ah or self.flags.l_aq:
            fields += ["le_aug_id", "le_aug_mask"]
        if self.flags.l_aq and self.flags.le_reward:
            fields += ["le_aug_reward"]
        assert set(fields) <= set(LE_FIELD_NAMES)
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

    # ------------------------------------------------------------------ hooks
    def q_state_size(self, hidden: int) -> int:
        return {"none": hidden, "concat": hidden + self.le_state_dim, "only": self.le_state_dim}[self.flags.le_state]

    def le_states(self, interaction) -> tuple[torch.Tensor | None, torch.Tensor | None]:  # type: ignore[no-untyped-def]
        if self.flags.le_state == "none":
            return None, None
        return interaction["le_state"], interaction["le_next_state"]  # [B d] x 2

    def q_state(self, h: torch.Tensor, le: torch.Tensor | None) -> torch.Tensor:
        if self.flags.le_state == "none":
            return h  # [B H]
        assert le is not None
        if self.le.le_state_norm:
            le = (le - self.le_state_mean) / self.le_state_std  # [B d]
        if self.flags.le_state == "only":
            return le  # [B d]
        return torch.cat([h, le], dim=-1)  # [B H+d]

    def _reward(self, raw: torch.Tensor, behaviour: float) -> torch.Tensor:
        """LE reward score -> reward. ``shaped``: the behaviour reward plus ``le_reward_scale``
        times the score standardised over the training rows; ``sigmoid`` / ``raw``: the score alone."""
        if self.le.le_reward_transform == "shaped":
            mean, std = self.le_reward_stats
            return behaviour + self.le.le_reward_scale * (raw - mean) / std
        return torch.sigmoid(raw) if self.le.le_reward_transform == "sigmoid" else raw

    def rewards_and_negatives(self, interaction, pos: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:  # type: ignore[no-untyped-def]
        if not self.flags.le_reward:
            return super().rewards_and_negatives(interaction, pos)  # type: ignore[misc]
        rl = self.rl  # type: ignore[attr-defined]
        B = pos.size(0)
        r_pos = self._reward(interaction["le_reward"], rl.reward_click)  # [B]
        negs, r_negs = [], []
        if self.le.le_negatives in ("sampled", "both"):
            # fresh uniform negatives each step, as SNQN/SA2C; the LE scored none of them, so each
            # gets the reward of the LE's mean negative score
            negs.append(self._sample_negatives(pos, rl.neg_num))  # type: ignore[attr-defined]  # [B K]
            fill = self._reward(self.le_neg_score_mean, rl.reward_negative)
            r_negs.append(fill.expand(B, rl.neg_num))
        if self.le.le_negatives in ("stored", "both"):
            negs.append(interaction["le_neg_id"].unsqueeze(1))  # [B 1] the build's negative
            r_negs.append(self._reward(interaction["le_neg_reward"], rl.reward_negative).unsqueeze(1))
        return r_pos, torch.cat(negs, dim=1), torch.cat(r_negs, dim=1)  # [B], [B K'], [B K']

    def extra_losses(
        self,
        interaction,  # type: ignore[no-untyped-def]
        logits: torch.Tensor,
        q: torch.Tensor,
        v_next: torch.Tensor,
        losses: dict[str, torch.Tensor],
    ) -> None:
        """``l_ah`` and ``l_aq`` on the LE-augmented action (Eq. 13-15)."""
        if not (self.flags.l_ah or self.flags.l_aq):
            return
        rl = self.rl  # type: ignore[attr-defined]
        aug = interaction["le_aug_id"]  # [B]
        mask = interaction["le_aug_mask"] * interaction["le_train"]  # [B]
        # mean over the batch, as if every row were augmented (Eq. 15): an augmented label weighs
        # w_ah relative to a true one whatever share of rows is augmented
        n = float(aug.size(0))
        if self.flags.l_ah:
            ce_aug = F.cross_entropy(logits, aug, reduction="none")  # [B]
            losses["l_ah"] = self.w_ah * (ce_aug * mask).sum() / n
        if self.flags.l_aq:
            r_aug = (
                self._reward(interaction["le_aug_reward"], rl.reward_click)
                if self.flags.le_reward
                else torch.full(aug.shape, rl.reward_click, device=aug.device)
            )  # [B]
            with torch.no_grad():
                y_aug = r_aug + rl.gamma * v_next  # the augmented action moves the user
            q_aug = q.gather(1, aug.unsqueeze(1)).squeeze(1)  # [B]
            losses["l_aq"] = self.w_aq * (0.5 * (y_aug - q_aug).pow(2) * mask).sum() / n
