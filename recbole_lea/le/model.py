"""The LE network (frozen LLM + one shared LoRA adapter + score head + item-token table) and the
two ways of running it: the streaming pass (one causal pass per user chunk, branch tokens for
candidate actions) and the naive reference (one prompt per interaction).

Prompt layout (a deviation from the paper's order, see docs/le.md): the instruction comes FIRST,
then the history's item tokens, so that a user's history is one causal stream:

    <instruction> x_s ... x_t [a]

* state s_t            = last hidden state at x_t              (paper: last hidden state of x_1..t)
* reward r(x_s..t, a)  = score_head(last hidden state at a)    (a appended after the history)

A candidate a at step t is computed exactly like the stream's own next item x_{t+1}, so the
positive reward of step t is read at x_{t+1}'s stream position; negatives and augmentation
candidates are *branch tokens* that attend to the instruction + x_s..x_t only (4-D attention
mask) and sit at position id t+1.

Context of step t ("chunking"): a user stream x_0..x_{n-1} is cut into chunks of at most
`le_chunk_len` items overlapping by `le_history_len - 1`; step t is read in the chunk that owns it
and sees the chunk's items from its start to t, which is at least its last `le_history_len` items
(all of them when t < le_history_len).  Inside a chunk positions are contiguous, so a chunk pass
and a standalone prompt "<instruction> x_s..x_t [a]" are the same computation.

Items as titles (``le_item_repr: titles``, the paper's -IT ablation of Fig. 5b): every item is a
span of ``le_title_tokens`` slots holding its title's word tokens, padded with slots nobody
attends to; states and rewards are read at the last word of an item's title, branches are spans
that see the prefix and the stream up to their anchor's span, and positions count words only, so
the streaming pass again equals the standalone prompts of the titles' words.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn

from .config import LEConfig
from .data import LEInputError


def plan_chunks(n: int, chunk_len: int, history_len: int) -> list[tuple[int, int, int, int]]:
    """Chunks (start, end, own_lo, own_hi) of a stream of n items.

    Items [start, end) are in the chunk; steps t in [own_lo, own_hi) are read there.  Every owned
    step t < n - 1 has its next item t + 1 inside the chunk (the positive reward is read there);
    an owned step of a later chunk sees t - start + 1 >= history_len items.
    """
    if chunk_len < history_len + 1:
        raise ValueError("chunk_len must be > history_len")
    chunks = []
    start, own_lo = 0, 0
    while True:
        end = min(start + chunk_len, n)
        if end == n:
            chunks.append((start, end, own_lo, n))
            return chunks
        own_hi = end - 1
        chunks.append((start, end, own_lo, own_hi))
        own_lo = own_hi
        start = own_lo - (history_len - 1)


def step_context_start(n: int, chunk_len: int, history_len: int) -> np.ndarray:
    """For each step t of a stream of n items, the first item index of its context."""
    out = np.zeros(n, dtype=np.int64)
    for start, _end, lo, hi in plan_chunks(n, chunk_len, history_len):
        out[lo:hi] = start
    return out


@dataclass
class ChunkSpec:
    """One chunk of a user stream plus its branch tokens."""

    items: np.ndarray  # LE item indices of the chunk's items
    own_lo: int  # owned steps, local indices into items
    own_hi: int
    branch_anchor: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))  # local step
    branch_item: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))


class LEModel(nn.Module):
    """Frozen causal LM + shared LoRA adapter + linear score head + item tokens (input-embedding space)."""

    def __init__(
        self,
        llm: nn.Module,
        item_tokens: torch.Tensor,
        cfg: LEConfig,
        lora: bool = True,
        titles: torch.Tensor | None = None,
    ):
        """``titles`` ([n_items, k] word-token ids, -1 in pad slots; with ``le_item_repr: titles``
        only): each item enters the LLM as its title's span of k slots, and ``item_tokens`` is the
        frozen item vector the state model's loss compares states with."""
        super().__init__()
        if (titles is not None) != (cfg.le_item_repr == "titles"):
            raise ValueError(f"le_item_repr={cfg.le_item_repr!r} needs titles exactly when it is 'titles'")
        #: [n_items, k] title ids (-1: pad slot), on the CPU; None with item tokens
        self.titles = titles.detach().cpu().long() if titles is not None else None
        for p in llm.parameters():
            p.requires_grad_(False)
        if lora:
            from peft import LoraConfig, get_peft_model

            lcfg = LoraConfig(
                r=cfg.le_lora_r,
                lora_alpha=cfg.le_lora_alpha,
                lora_dropout=cfg.le_lora_dropout,
                target_modules=list(cfg.le_lora_targets),
                bias="none",
            )
            llm = get_peft_model(llm, lcfg)
        self.llm = llm
        hidden = self.body_config().hidden_size
        self.item_tokens = nn.Parameter(item_tokens.detach().clone().float())
        self.score_head = nn.Linear(hidden, 1)
        nn.init.normal_(self.score_head.weight, std=1.0 / hidden**0.5)
        nn.init.zeros_(self.score_head.bias)
        emb_dim = self.item_tokens.shape[1]
        # The state is compared with item tokens; project when the dims differ (not for one LLM).
        self.state_proj: nn.Module = nn.Identity() if emb_dim == hidden else nn.Linear(hidden, emb_dim)
        self.item_tokens.requires_grad_(cfg.le_train_item_tokens and titles is None)

    # --- plumbing ---------------------------------------------------------------------------------
    def causal_lm(self) -> nn.Module:
        return self.llm.get_base_model() if hasattr(self.llm, "get_base_model") else self.llm

    def body(self) -> nn.Module:
        return self.causal_lm().model

    def body_config(self):
        return self.causal_lm().config

    @property
    def device(self) -> torch.device:
        return self.item_tokens.device

    @property
    def dtype(self) -> torch.dtype:
        return self.causal_lm().get_input_embeddings().weight.dtype

    def enable_grad_checkpointing(self) -> None:
        """Recompute the LLM's layer activations in the backward pass (option le_grad_checkpointing):
        memory for one layer's activations instead of all of them, for one more forward. Only in
        training mode; featurization (eval, no grad) is unaffected."""
        lm = self.causal_lm()
        kwargs = {"use_reentrant": False}
        if hasattr(lm, "activation_checkpointing_enable"):  # the current name; the old one warns
            lm.activation_checkpointing_enable(activation_checkpointing_kwargs=kwargs)
        else:
            lm.gradient_checkpointing_enable(gradient_checkpointing_kwargs=kwargs)

    def place(self, device: torch.device) -> LEModel:
        """Move the score head, the state projection and the item tokens to ``device``, leaving the
        LLM where it was loaded (a bitsandbytes 8/4-bit model cannot be moved after loading)."""
        self.score_head.to(device)
        self.state_proj.to(device)
        self.item_tokens.data = self.item_tokens.data.to(device)
        return self

    def lora_state_dict(self) -> dict[str, torch.Tensor]:
        return {k: v.detach().cpu() for k, v in self.named_parameters() if "lora_" in k}

    def trainable_state(self) -> dict[str, torch.Tensor]:
        out = self.lora_state_dict()
        out.update({f"score_head.{k}": v.detach().cpu() for k, v in self.score_head.state_dict().items()})
        if isinstance(self.state_proj, nn.Linear):
            out.update({f"state_proj.{k}": v.detach().cpu() for k, v in self.state_proj.state_dict().items()})
        out["item_tokens"] = self.item_tokens.detach().cpu()
        return out

    def load_trainable_state(self, state: dict[str, torch.Tensor]) -> None:
        missing = self.load_state_dict(state, strict=False)
        expected = set(self.trainable_state())
        lost = [k for k in missing.missing_keys if k in expected]
        if lost or missing.unexpected_keys:
            raise RuntimeError(f"LE state mismatch: missing {lost}, unexpected {missing.unexpected_keys}")

    def embed(self, token_ids: torch.Tensor, item_ids: torch.Tensor) -> torch.Tensor:
        """Word embeddings where item_ids < 0, item tokens elsewhere."""
        words = self.causal_lm().get_input_embeddings()(token_ids.clamp(min=0))
        items = self.item_tokens[item_ids.clamp(min=0)].to(words.dtype)
        return torch.where((item_ids >= 0).unsqueeze(-1), items, words)

    def hidden(self, embeds: torch.Tensor, mask4d: torch.Tensor, position_ids: torch.Tensor) -> torch.Tensor:
        window = getattr(self.body_config(), "sliding_window", None)
        if window and embeds.shape[1] > window:
            # our explicit 4D masks replace the model's own, so a sliding window would not be applied
            raise LEInputError(
                f"an LE sequence of {embeds.shape[1]} tokens exceeds the LLM's sliding window ({window}); "
                f"lower le_chunk_len (items per chunk, in training and featurization)"
            )
        out = self.body()(inputs_embeds=embeds, attention_mask=mask4d, position_ids=position_ids, use_cache=False)
        return out.last_hidden_state

    def reward(self, h: torch.Tensor) -> torch.Tensor:
        return self.score_head(h.float()).squeeze(-1)

    def state(self, h: torch.Tensor) -> torch.Tensor:
        return self.state_proj(h.float())

    def words(self, token_ids: torch.Tensor) -> torch.Tensor:
        """Word embeddings (as the LLM's embedding module outputs them)."""
        return self.causal_lm().get_input_embeddings()(token_ids)

    # --- streaming ------------------------------------------------------------------------------
    def forward_chunks(self, prefix_ids: list[int], chunks: list[ChunkSpec]) -> dict[str, list[torch.Tensor]]:
        """One padded forward over several chunks.  Returns per chunk: `states` of owned steps,
        `pos_reward` of owned steps that have a next item in the chunk, `branch_reward`."""
        if self.titles is not None:
            return self.forward_title_chunks(prefix_ids, chunks)
        p = len(prefix_ids)
        lens = [p + len(c.items) + len(c.branch_item) for c in chunks]
        B, T = len(chunks), max(lens)
        dev = self.device
        token_ids = torch.zeros(B, T, dtype=torch.long)
        item_ids = torch.full((B, T), -1, dtype=torch.long)
        pos = torch.zeros(B, T, dtype=torch.long)
        allowed = torch.zeros(B, T, T, dtype=torch.bool)
        ar = torch.arange(T)
        prefix = torch.tensor(prefix_ids, dtype=torch.long)
        for b, c in enumerate(chunks):
            m, nb = len(c.items), len(c.branch_item)
            s = p + m
            token_ids[b, :p] = prefix
            item_ids[b, p:s] = torch.from_numpy(np.asarray(c.items, dtype=np.int64))
            pos[b, :s] = ar[:s]
            allowed[b, :s, :s] = torch.ones(s, s, dtype=torch.bool).tril()
            if nb:
                anchor = torch.from_numpy(np.asarray(c.branch_anchor, dtype=np.int64))
                item_ids[b, s : s + nb] = torch.from_numpy(np.asarray(c.branch_item, dtype=np.int64))
                pos[b, s : s + nb] = p + anchor + 1
                allowed[b, s : s + nb, :] = ar.unsqueeze(0) <= (p + anchor).unsqueeze(1)
            allowed[b, ar, ar] = True  # branch and pad tokens see themselves
        dtype = self.dtype
        mask = torch.zeros(B, 1, T, T, dtype=dtype)
        mask.masked_fill_(~allowed.unsqueeze(1), torch.finfo(dtype).min)
        embeds = self.embed(token_ids.to(dev), item_ids.to(dev))
        h = self.hidden(embeds, mask.to(dev), pos.to(dev))
        out: dict[str, list[torch.Tensor]] = {"states": [], "pos_reward": [], "branch_reward": []}
        for b, c in enumerate(chunks):
            m, nb = len(c.items), len(c.branch_item)
            out["states"].append(self.state(h[b, p + c.own_lo : p + c.own_hi]))
            hi_r = min(c.own_hi, m - 1)
            out["pos_reward"].append(self.reward(h[b, p + c.own_lo + 1 : p + hi_r + 1]))
            out["branch_reward"].append(self.reward(h[b, p + m : p + m + nb]))
        return out

    # --- naive reference --------------------------------------------------------------------------
    def forward_prompt(
        self, prefix_ids: list[int], context: np.ndarray, action: int | None
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """One standalone prompt '<instruction> context [action]' (plain causal mask).

        Returns (state at the last context item, reward of action or None)."""
        if self.titles is not None:
            return self.forward_title_prompt(prefix_ids, context, action)
        p = len(prefix_ids)
        items = list(context) + ([action] if action is not None else [])
        T = p + len(items)
        token_ids = torch.zeros(1, T, dtype=torch.long)
        token_ids[0, :p] = torch.tensor(prefix_ids)
        item_ids = torch.full((1, T), -1, dtype=torch.long)
        item_ids[0, p:] = torch.tensor(items, dtype=torch.long)
        dtype = self.dtype
        mask = torch.zeros(1, 1, T, T, dtype=dtype)
        mask.masked_fill_(~torch.ones(T, T, dtype=torch.bool).tril(), torch.finfo(dtype).min)
        dev = self.device
        h = self.hidden(
            self.embed(token_ids.to(dev), item_ids.to(dev)), mask.to(dev), torch.arange(T, device=dev)[None]
        )
        last_ctx = p + len(context) - 1
        state = self.state(h[0, last_ctx])
        reward = self.reward(h[0, T - 1]) if action is not None else None
        return state, reward

    # --- items as titles (le_item_repr: titles) ----------------------------------------------------
    def forward_title_chunks(self, prefix_ids: list[int], chunks: list[ChunkSpec]) -> dict[str, list[torch.Tensor]]:
        """:meth:`forward_chunks` with every item a span of its title's k slots (:func:`title_layout`):
        a step's state and an item's reward are read at the last word of its title."""
        assert self.titles is not None
        prefix = torch.tensor(prefix_ids, dtype=torch.long)
        layouts = [title_layout(prefix, c, self.titles) for c in chunks]
        B, T = len(chunks), max(len(lay.tokens) for lay in layouts)
        token_ids = torch.zeros(B, T, dtype=torch.long)
        pos = torch.zeros(B, T, dtype=torch.long)
        allowed = torch.zeros(B, T, T, dtype=torch.bool)
        for b, lay in enumerate(layouts):
            n = len(lay.tokens)
            token_ids[b, :n], pos[b, :n], allowed[b, :n, :n] = lay.tokens, lay.pos, lay.allowed
        ar = torch.arange(T)
        allowed[:, ar, ar] = True  # pad slots see themselves (and nobody sees them)
        dtype, dev = self.dtype, self.device
        mask = torch.zeros(B, 1, T, T, dtype=dtype)
        mask.masked_fill_(~allowed.unsqueeze(1), torch.finfo(dtype).min)
        h = self.hidden(self.words(token_ids.to(dev)), mask.to(dev), pos.to(dev))
        out: dict[str, list[torch.Tensor]] = {"states": [], "pos_reward": [], "branch_reward": []}
        for b, (c, lay) in enumerate(zip(chunks, layouts, strict=True)):
            read = lay.item_read.to(dev)
            hi_r = min(c.own_hi, len(c.items) - 1)
            out["states"].append(self.state(h[b, read[c.own_lo : c.own_hi]]))
            out["pos_reward"].append(self.reward(h[b, read[c.own_lo + 1 : hi_r + 1]]))
            out["branch_reward"].append(self.reward(h[b, lay.branch_read.to(dev)]))
        return out

    def forward_title_prompt(
        self, prefix_ids: list[int], context: np.ndarray, action: int | None
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """:meth:`forward_prompt` with items as titles: '<instruction> title(x_s) .. title(x_t)
        [title(a)]' with only the titles' words (no pad slot), plain causal mask."""
        assert self.titles is not None
        titles = self.titles

        def words_of(item: int) -> list[int]:
            row = titles[int(item)]
            return row[row >= 0].tolist()

        ctx = [t for item in context for t in words_of(item)]
        act = words_of(action) if action is not None else []
        ids = torch.tensor([list(prefix_ids) + ctx + act], dtype=torch.long)
        T = ids.shape[1]
        dtype, dev = self.dtype, self.device
        mask = torch.zeros(1, 1, T, T, dtype=dtype)
        mask.masked_fill_(~torch.ones(T, T, dtype=torch.bool).tril(), torch.finfo(dtype).min)
        h = self.hidden(self.words(ids.to(dev)), mask.to(dev), torch.arange(T, device=dev)[None])
        state = self.state(h[0, len(prefix_ids) + len(ctx) - 1])
        reward = self.reward(h[0, T - 1]) if action is not None else None
        return state, reward


@dataclass
class TitleLayout:
    """One chunk's sequence with items as titles: the prefix, one span of k slots per chunk item,
    then one per branch; pad slots (titles shorter than k) are attended by no position."""

    tokens: torch.Tensor  # [L] word ids (0 in pad slots)
    pos: torch.Tensor  # [L] position ids: the real words' count before the slot (pads: their span's last)
    allowed: torch.Tensor  # [L, L] bool, query x key
    item_read: torch.Tensor  # [m] slot of each chunk item's last word
    branch_read: torch.Tensor  # [nb] slot of each branch's last word


def title_layout(prefix: torch.Tensor, c: ChunkSpec, titles: torch.Tensor) -> TitleLayout:
    """The slots of chunk ``c`` with items as titles ([n_items, k] ids, -1 pad).

    Stream words attend causally to the prefix and the stream's words; a branch's words attend to
    the prefix, the stream's words up to its anchor item's span and causally to their own branch,
    with positions continuing from the anchor's last word: each branch is the standalone prompt
    '<instruction> titles of the chunk's items up to the anchor, the branch's title'."""
    p, k = len(prefix), titles.shape[1]
    items = torch.as_tensor(np.asarray(c.items, dtype=np.int64))
    branch = torch.as_tensor(np.asarray(c.branch_item, dtype=np.int64))
    anchor = torch.as_tensor(np.asarray(c.branch_anchor, dtype=np.int64))
    m, nb = len(items), len(branch)
    spans = titles[torch.cat([items, branch])]  # [m + nb, k]
    real_span = spans >= 0
    lens = real_span.sum(1)
    ends = p + torch.cumsum(lens[:m], 0)  # position after each stream item's last word
    starts = torch.cat([ends - lens[:m], ends[anchor]])  # first word's position of every span
    within = torch.minimum(torch.arange(k)[None, :], (lens - 1)[:, None])
    L = p + (m + nb) * k
    idx = torch.arange(L)
    seg = torch.cat([torch.zeros(p + m * k, dtype=torch.long), torch.arange(1, nb + 1).repeat_interleave(k)])
    limit = torch.cat([idx[: p + m * k] + 1, (p + (anchor + 1) * k).repeat_interleave(k)])
    real = torch.cat([torch.ones(p, dtype=torch.bool), real_span.reshape(-1)])
    main = (seg[None, :] == 0) & (idx[None, :] < limit[:, None])
    own = (seg[None, :] == seg[:, None]) & (seg[:, None] > 0) & (idx[None, :] <= idx[:, None])
    span_at = p + torch.arange(m + nb) * k + lens - 1
    return TitleLayout(
        tokens=torch.cat([prefix, spans.clamp(min=0).reshape(-1)]),
        pos=torch.cat([torch.arange(p), (starts[:, None] + within).reshape(-1)]),
        allowed=real[None, :] & real[:, None] & (main | own),  # a pad slot: only itself (set by the caller)
        item_read=span_at[:m],
        branch_read=span_at[m:],
    )


def prefix_ids(tokenizer, cfg: LEConfig) -> list[int]:
    text = cfg.le_instruction.format(noun=cfg.le_item_noun, verb=cfg.le_item_verb)
    return list(tokenizer(text, add_special_tokens=True)["input_ids"])


def naive_stream_features(
    model: LEModel, prefix: list[int], items: np.ndarray, branches: np.ndarray | None, cfg: LEConfig
) -> dict[str, np.ndarray]:
    """Reference: one prompt per interaction (and per branch), same contexts as the stream."""
    n = len(items)
    ctx_start = step_context_start(n, cfg.le_chunk_len, cfg.le_history_len)
    states, pos_r = [], []
    k = 0 if branches is None else branches.shape[1]
    br = np.zeros((max(n - 1, 0), k), dtype=np.float32)
    with torch.no_grad():
        for t in range(n):
            ctx = items[ctx_start[t] : t + 1]
            if t < n - 1:
                s, r = model.forward_prompt(prefix, ctx, int(items[t + 1]))
                pos_r.append(float(r))
                for j in range(k):
                    if branches[t, j] >= 0:
                        _, rb = model.forward_prompt(prefix, ctx, int(branches[t, j]))
                        br[t, j] = float(rb)
            else:
                s, _ = model.forward_prompt(prefix, ctx, None)
            states.append(s.float().cpu().numpy())
    return {"states": np.stack(states), "pos_reward": np.asarray(pos_r, dtype=np.float32), "branch_reward": br}


def user_chunks(items: np.ndarray, branches: np.ndarray | None, cfg: LEConfig) -> list[ChunkSpec]:
    """Chunk specs of one user stream; branches[t, j] (item or -1) is a branch at step t."""
    n = len(items)
    specs = []
    for start, end, lo, hi in plan_chunks(n, cfg.le_chunk_len, cfg.le_history_len):
        anchors, bitems = np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)
        if branches is not None and branches.size:
            steps = np.arange(lo, min(hi, n - 1))
            sub = branches[steps]
            tt, jj = np.nonzero(sub >= 0)
            anchors = (steps[tt] - start).astype(np.int64)
            bitems = sub[tt, jj].astype(np.int64)
        specs.append(ChunkSpec(items[start:end], lo - start, hi - start, anchors, bitems))
    return specs


#: users featurized together (bounded memory); one unit of a multi-process featurization
FEATURIZE_USERS = 64


def stream_features(
    model: LEModel,
    prefix: list[int],
    streams: list[np.ndarray],
    branches: list[np.ndarray | None] | None,
    cfg: LEConfig,
    batch_chunks: int | None = None,
    progress=None,
) -> list[dict[str, np.ndarray]]:
    """Streaming featurization of several user streams (no grad).

    Per stream: `states` [n, H] (state of every step), `pos_reward` [n-1] (reward of x_{t+1} at step
    t), `branch_reward` [n-1, K] (reward of branches[t, j]; 0 where branches[t, j] < 0)."""
    batch_chunks = batch_chunks or cfg.le_feat_batch
    jobs = []  # (stream index, spec, branch (t, j) coordinates)
    for u, items in enumerate(streams):
        br = branches[u] if branches is not None else None
        n = len(items)
        for spec, (_start, _e, lo, hi) in zip(
            user_chunks(items, br, cfg), plan_chunks(n, cfg.le_chunk_len, cfg.le_history_len), strict=True
        ):
            coords = None
            if br is not None and br.size:
                steps = np.arange(lo, min(hi, n - 1))
                tt, jj = np.nonzero(br[steps] >= 0)
                coords = (steps[tt], jj)
            jobs.append((u, spec, coords, lo, hi))
    results = []
    for items in streams:
        n = len(items)
        k = 0 if branches is None or branches[0] is None else branches[0].shape[1]
        results.append(
            {
                "states": None,
                "pos_reward": np.zeros(max(n - 1, 0), dtype=np.float32),
                "branch_reward": np.zeros((max(n - 1, 0), k), dtype=np.float32),
                "_states": [],
            }
        )
    # longest first keeps the padding small
    jobs.sort(key=lambda j: -(len(j[1].items) + len(j[1].branch_item)))
    with torch.no_grad():
        for i in range(0, len(jobs), batch_chunks):
            batch = jobs[i : i + batch_chunks]
            out = model.forward_chunks(prefix, [j[1] for j in batch])
            for b, (u, _spec, coords, lo, hi) in enumerate(batch):
                res = results[u]
                n = len(streams[u])
                res["_states"].append((lo, out["states"][b].float().cpu().numpy()))
                pr = out["pos_reward"][b].float().cpu().numpy()
                res["pos_reward"][lo : lo + len(pr)] = pr
                if coords is not None:
                    res["branch_reward"][coords[0], coords[1]] = out["branch_reward"][b].float().cpu().numpy()
                assert hi <= n
            if progress is not None:
                progress.update(sum(j[4] - j[3] for j in batch))
    for res in results:
        parts = sorted(res.pop("_states"), key=lambda x: x[0])
        res["states"] = np.concatenate([p[1] for p in parts]) if parts else np.zeros((0, 0), np.float32)
    return results
