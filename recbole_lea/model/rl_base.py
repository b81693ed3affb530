"""The double-Q machinery of SNQN, shared by every RL recommender here.

:class:`DoubleQRecommender` implements the supervised + double-Q update of the original SNQN code
(Xin et al., WSDM'22). Its subclasses change one piece each through a hook:

- ``supervised_loss`` -- SA2C (``sa2c.py``) weights L_h by the clipped advantage after its switch;
- ``rewards_and_negatives``, ``le_states``, ``q_state``, ``extra_losses`` -- the LE feedback of
  LEA (``le_feedback.py``: rewards, states and augmented actions of the LLM environment).

Per training step (CleanRL style: targets under ``torch.no_grad()``, every term named and logged):

1. a fair coin picks the *main* network of the two complete copies; the other gives targets;
2. states: ``s_t = G(x_1..x_t)`` and ``s_{t+1} = G(x_1..x_{t+1})`` (built from ``item_id_list``
   + ``item_id``), possibly with the LE state (Eq. 3/4);
3. positive TD target ``r + gamma * (1 - done) * Q'(s_{t+1}, argmax_a Q(s_{t+1}, a))``;
   negative TD target (each sampled negative) ``r_neg + gamma * Q'(s_t, argmax_a Q(s_t, a))``
   (a negative action does not move the user);
4. losses named after the LEA paper: ``l_h`` (supervised CE, Eq. 8), ``l_p`` and ``l_n``
   (positive and negative TD errors of L_q, Eq. 10, times ``q_weight``), plus the hooks' terms.
   Diagnostics (the advantage, the phase) are logged beside the losses, never summed into them.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch
import torch.nn.functional as F
from recbole.model.abstract_recommender import SequentialRecommender
from recbole.utils import InputType
from torch import nn

from recbole_lea.data.dataset import DONE_FIELD
from recbole_lea.model.backbones import build_encoder
from recbole_lea.model.options import RLOptions
from recbole_lea.options import build


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

    def __init__(self, opts: RLOptions, n_items: int, max_len: int, q_in: int, config) -> None:  # type: ignore[no-untyped-def]
        super().__init__()
        self.encoder = build_encoder(opts.backbone, n_items, max_len, config)
        hidden = self.encoder.hidden_size
        if opts.ce_head == "tied":
            self.ce_head: nn.Module = TiedHead(self.encoder.item_embedding)  # h E^T
        else:
            self.ce_head = nn.Linear(hidden, n_items)  # W_u h + b_u
        self.q_head = nn.Linear(q_in, n_items)  # W_q s + b_q
        for head in (self.ce_head, self.q_head):
            if isinstance(head, nn.Linear):
                nn.init.normal_(head.weight, std=config["initializer_range"])
                nn.init.zeros_(head.bias)


def read_options(cls: type, config) -> object:  # type: ignore[no-untyped-def]
    """The options dataclass ``cls`` filled from a RecBole config (absent keys take their default)."""
    from recbole_lea.options import specs_of

    values = {}
    for name in specs_of(cls):
        try:
            value = config[name]
        except KeyError:
            value = None
        if value is not None:
            values[name] = value
    return build(cls, values, "the run config")


class DoubleQRecommender(SequentialRecommender):
    """Supervised sequential model + double-Q head with sampled negatives (SNQN's update)."""

    input_type = InputType.POINTWISE

    def __init__(self, config, dataset) -> None:  # type: ignore[no-untyped-def]
        super().__init__(config, dataset)

        # load parameters info
        self.rl: RLOptions = read_options(RLOptions, config)  # type: ignore[assignment]
        self.setup_options(config, dataset)

        # define layers: two complete networks (double Q-learning, no lagged copy)
        hidden = config["hidden_size"] if self.rl.backbone == "SASRec" else config["embedding_size"]
        self.nets = nn.ModuleList(
            QNetwork(self.rl, self.n_items, self.max_seq_length, self.q_state_size(hidden), config) for _ in range(2)
        )
        # optimiser steps of this model (SA2C's phase switch reads it; saved with the model)
        self.register_buffer("global_step", torch.zeros((), dtype=torch.long))
        #: sums of each named loss term and diagnostic since the trainer last read them
        self.loss_terms: dict[str, float] = {}
        self.diagnostic_terms: dict[str, float] = {}
        self._loss_batches = 0

    # ------------------------------------------------------------------ hooks
    def setup_options(self, config, dataset) -> None:  # type: ignore[no-untyped-def]
        """Read a subclass's own options (called before the networks are built)."""

    def q_state_size(self, hidden: int) -> int:
        """Input size of the Q head: the backbone's state ``h_t``."""
        return hidden

    def le_states(self, interaction) -> tuple[torch.Tensor | None, torch.Tensor | None]:  # type: ignore[no-untyped-def]
        """Extra state inputs of the current and next step (none without an LE)."""
        return None, None

    def q_state(self, h: torch.Tensor, le: torch.Tensor | None) -> torch.Tensor:
        """The Q head's state from the backbone's ``h`` [B H] (and an LE state)."""
        return h

    def rewards_and_negatives(self, interaction, pos: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:  # type: ignore[no-untyped-def]
        """Behaviour rewards and ``neg_num`` fresh uniform negatives: (r_pos [B], neg [B K], r_neg [B K])."""
        neg = self._sample_negatives(pos, self.rl.neg_num)  # [B K]
        r_pos = torch.full(pos.shape, self.rl.reward_click, device=pos.device)  # [B]
        return r_pos, neg, torch.full(neg.shape, self.rl.reward_negative, device=pos.device)

    def supervised_loss(
        self, ce: torch.Tensor, q_pos: torch.Tensor, q_neg: torch.Tensor, diagnostics: dict[str, torch.Tensor]
    ) -> torch.Tensor:
        """L_h from the per-row CE [B]: its mean (SNQN)."""
        return ce.mean()

    def extra_losses(
        self,
        interaction,  # type: ignore[no-untyped-def]
        logits: torch.Tensor,
        q: torch.Tensor,
        v_next: torch.Tensor,
        losses: dict[str, torch.Tensor],
    ) -> None:
        """Add further named loss terms (none in SNQN)."""

    def in_phase_two(self) -> bool:
        """Whether the update has switched to its second phase (never in SNQN)."""
        return False

    # ------------------------------------------------------------------ helpers
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

    def calculate_loss(self, interaction) -> torch.Tensor:  # type: ignore[no-untyped-def]
        item_seq = interaction[self.ITEM_SEQ]  # [B L]
        item_seq_len = interaction[self.ITEM_SEQ_LEN]  # [B]
        pos = interaction[self.ITEM_ID]  # [B]
        B = pos.size(0)
        use_done = self.rl.use_done and DONE_FIELD in interaction
        done = interaction[DONE_FIELD] if use_done else torch.zeros(B, device=pos.device)  # [B]
        le_state, le_next_state = self.le_states(interaction)  # [B d] x 2 or None

        # coin: which network is trained this step (Algorithm 1, lines 7-16)
        main_idx = int(torch.randint(0, 2, (1,)).item())
        main, target = self.nets[main_idx], self.nets[1 - main_idx]
        self.last_main_idx = main_idx

        r_pos, neg, r_neg = self.rewards_and_negatives(interaction, pos)  # [B], [B K], [B K]

        h = main.encoder(item_seq, item_seq_len)  # [B H]
        logits = main.ce_head(h)  # [B N]
        q = main.q_head(self.q_state(h, le_state))  # [B N]
        next_seq, next_len = self._next_sequence(item_seq, item_seq_len, pos)

        # TD targets (double Q-learning); dropout in these passes only with `target_dropout`
        with torch.no_grad(), self._dropout(self.rl.target_dropout):
            q_next_main = main.q_head(self.q_state(main.encoder(next_seq, next_len), le_next_state))  # [B N]
            # The target network is read only at the main network's argmax actions, so it needs no
            # full [B N] product: current and next states in one batch of 2B, then one row each.
            h_tgt = target.encoder(torch.cat([item_seq, next_seq]), torch.cat([item_seq_len, next_len]))  # [2B H]
            le_both = None if le_state is None else torch.cat([le_state, le_next_state])  # type: ignore[list-item]
            actions = torch.cat([q.detach().argmax(1), q_next_main.argmax(1)])  # [2B]
            v_cur, v_next = self._q_at(target.q_head, self.q_state(h_tgt, le_both), actions).split(B)  # [B] x 2
            y_pos = r_pos + self.rl.gamma * (1.0 - done) * v_next  # [B]
            y_neg = r_neg + self.rl.gamma * v_cur.unsqueeze(1)  # [B K]

        q_pos = q.gather(1, pos.unsqueeze(1)).squeeze(1)  # [B]
        q_neg = q.gather(1, neg)  # [B K]
        ce = F.cross_entropy(logits, pos, reduction="none")  # [B]

        losses: dict[str, torch.Tensor] = {}
        diagnostics: dict[str, torch.Tensor] = {}
        losses["l_h"] = self.supervised_loss(ce, q_pos, q_neg, diagnostics)
        losses["l_p"] = self.rl.q_weight * (0.5 * (y_pos - q_pos).pow(2)).mean()
        losses["l_n"] = self.rl.q_weight * (0.5 * (y_neg - q_neg).pow(2).sum(1)).mean()
        self.extra_losses(interaction, logits, q, v_next, losses)

        loss = sum(losses.values())
        if self.training:
            self.global_step += 1
            self._log_terms(losses, diagnostics)
        return loss  # type: ignore[return-value]

    def _log_terms(self, losses: dict[str, torch.Tensor], diagnostics: dict[str, torch.Tensor]) -> None:
        for store, terms in ((self.loss_terms, losses), (self.diagnostic_terms, diagnostics)):
            for name, value in terms.items():
                store[name] = store.get(name, 0.0) + float(value.detach())
        self._loss_batches += 1

    def pop_loss_terms(self) -> tuple[dict[str, float], dict[str, float]]:
        """Mean of each named loss term and of each diagnostic since the last call (read by the
        trainer once per epoch)."""
        n = max(self._loss_batches, 1)
        losses = {k: v / n for k, v in self.loss_terms.items()}
        diagnostics = {k: v / n for k, v in self.diagnostic_terms.items()}
        self.loss_terms, self.diagnostic_terms, self._loss_batches = {}, {}, 0
        return losses, diagnostics

    def predict(self, interaction) -> torch.Tensor:  # type: ignore[no-untyped-def]
        scores = self.forward(interaction[self.ITEM_SEQ], interaction[self.ITEM_SEQ_LEN])  # [B N]
        return scores.gather(1, interaction[self.ITEM_ID].unsqueeze(1)).squeeze(1)  # [B]

    def full_sort_predict(self, interaction) -> torch.Tensor:  # type: ignore[no-untyped-def]
        return self.forward(interaction[self.ITEM_SEQ], interaction[self.ITEM_SEQ_LEN])  # [B N]
