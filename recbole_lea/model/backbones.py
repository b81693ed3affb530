"""Sequence encoders G(x_1..x_t) -> h_t shared by the RL recommenders.

Both are built from RecBole's own layers and initialised as RecBole's ``SASRec`` / ``GRU4Rec``
are, so an RL model over a backbone and the built-in baseline differ only in the heads and
the loss.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from recbole.model.layers import TransformerEncoder
from torch import nn

from recbole_lea.errors import ConfigError
from recbole_lea.model.options import BACKBONES


class FastDropout(nn.Dropout):
    """``nn.Dropout`` whose CPU masks take 16 random bits each, four per 64-bit random word.

    torch's CPU dropout draws one generator call per element (``bernoulli_``), a large share of a
    training step of SNQN/SA2C with their three no-grad target passes (measured in docs/rl.md).
    One ``random_()`` call per four elements cuts that cost. Same
    distribution up to the threshold's resolution: drop probability ``round(p * 65536) / 65536``
    for three of every four elements and ``round(p * 32768) / 32768`` for the fourth (the top 16
    bits of torch's non-negative int64 have 15 random bits). Same expectation scaling ``1/(1-p)``.
    Other devices use ``F.dropout``.
    """

    def __init__(self, p: float = 0.5) -> None:
        super().__init__(p)
        low = round(p * 65536) - 32768  # int16 of the three low 16-bit groups: uniform over all values
        top = round(p * 32768)  # int16 of the top group: uniform over [0, 32767]
        self._threshold = torch.tensor([low, low, low, top], dtype=torch.int16)  # [4], CPU only

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p == 0.0:
            return x
        if x.device.type != "cpu" or self.p >= 1.0:
            return F.dropout(x, self.p, True)
        n = x.numel()
        words = torch.empty((n + 3) // 4, dtype=torch.int64).random_()  # [ceil(n/4)] in [0, 2^63)
        keep = (words.view(torch.int16).view(-1, 4) >= self._threshold).view(-1)[:n].view_as(x)  # [*x] bool
        return x * keep * (1.0 / (1.0 - self.p))


def use_fast_dropout(module: nn.Module) -> None:
    """Replace every plain ``nn.Dropout`` inside ``module`` (RecBole's layers included) by
    :class:`FastDropout` with the same probability."""
    for parent in list(module.modules()):
        for name, child in list(parent.named_children()):
            if type(child) is nn.Dropout:
                setattr(parent, name, FastDropout(child.p))


def gather_last(output: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """output [B L H], lengths [B] -> hidden state at position length-1, [B H]."""
    index = (lengths - 1).clamp(min=0).view(-1, 1, 1).expand(-1, 1, output.size(-1))
    return output.gather(1, index).squeeze(1)


class SASRecEncoder(nn.Module):
    """Self-attentive encoder (Kang & McAuley, ICDM'18) as in RecBole's ``SASRec``."""

    def __init__(self, n_items: int, max_len: int, config) -> None:  # type: ignore[no-untyped-def]
        super().__init__()
        # define layers
        self.hidden_size: int = config["hidden_size"]
        self.item_embedding = nn.Embedding(n_items, self.hidden_size, padding_idx=0)
        self.position_embedding = nn.Embedding(max_len, self.hidden_size)
        self.trm_encoder = TransformerEncoder(
            n_layers=config["n_layers"],
            n_heads=config["n_heads"],
            hidden_size=self.hidden_size,
            inner_size=config["inner_size"],
            hidden_dropout_prob=config["hidden_dropout_prob"],
            attn_dropout_prob=config["attn_dropout_prob"],
            hidden_act=config["hidden_act"],
            layer_norm_eps=config["layer_norm_eps"],
        )
        self.layer_norm = nn.LayerNorm(self.hidden_size, eps=config["layer_norm_eps"])
        self.dropout = nn.Dropout(config["hidden_dropout_prob"])
        # parameters initialization
        self.initializer_range: float = config["initializer_range"]
        self.apply(self._init_weights)

    def _init_weights(self, module: nn.Module) -> None:
        if isinstance(module, (nn.Linear, nn.Embedding)):
            module.weight.data.normal_(mean=0.0, std=self.initializer_range)
        elif isinstance(module, nn.LayerNorm):
            module.bias.data.zero_()
            module.weight.data.fill_(1.0)
        if isinstance(module, nn.Linear) and module.bias is not None:
            module.bias.data.zero_()

    def forward(self, item_seq: torch.Tensor, item_seq_len: torch.Tensor) -> torch.Tensor:
        # item_seq [B L] right-padded with 0, item_seq_len [B]
        positions = torch.arange(item_seq.size(1), device=item_seq.device).unsqueeze(0)  # [1 L]
        x = self.item_embedding(item_seq) + self.position_embedding(positions)  # [B L H]
        x = self.dropout(self.layer_norm(x))
        # causal mask over non-padding positions, as SequentialRecommender.get_attention_mask
        pad = (item_seq != 0).unsqueeze(1).unsqueeze(2)  # [B 1 1 L]
        causal = torch.tril(
            torch.ones(item_seq.size(1), item_seq.size(1), dtype=torch.bool, device=item_seq.device)
        )  # [L L]
        mask = pad & causal  # [B 1 L L]
        mask = torch.where(mask, 0.0, -10000.0).to(x.dtype)
        output = self.trm_encoder(x, mask, output_all_encoded_layers=True)[-1]  # [B L H]
        return gather_last(output, item_seq_len)  # [B H]


class GRU4RecEncoder(nn.Module):
    """GRU encoder (Hidasi et al., ICLR'16) as in RecBole's ``GRU4Rec``: final hidden state at the
    true length."""

    def __init__(self, n_items: int, max_len: int, config) -> None:  # type: ignore[no-untyped-def]
        super().__init__()
        # define layers
        self.hidden_size: int = config["hidden_size"]
        embedding_size: int = config["embedding_size"]
        self.item_embedding = nn.Embedding(n_items, embedding_size, padding_idx=0)
        self.emb_dropout = nn.Dropout(config["dropout_prob"])
        self.gru_layers = nn.GRU(
            input_size=embedding_size,
            hidden_size=self.hidden_size,
            num_layers=config["num_layers"],
            bias=False,
            batch_first=True,
        )
        self.dense = nn.Linear(self.hidden_size, embedding_size)
        self.hidden_size = embedding_size  # output size of the dense layer
        # parameters initialization (RecBole GRU4Rec: xavier for embeddings and GRU weights)
        nn.init.xavier_normal_(self.item_embedding.weight)
        for name, param in self.gru_layers.named_parameters():
            if "weight" in name:
                nn.init.xavier_uniform_(param)

    def forward(self, item_seq: torch.Tensor, item_seq_len: torch.Tensor) -> torch.Tensor:
        x = self.emb_dropout(self.item_embedding(item_seq))  # [B L E]
        output, _ = self.gru_layers(x)  # [B L H]
        output = self.dense(output)  # [B L E]
        return gather_last(output, item_seq_len)  # [B E]


def build_encoder(name: str, n_items: int, max_len: int, config) -> nn.Module:  # type: ignore[no-untyped-def]
    encoder: nn.Module
    if name == "SASRec":
        encoder = SASRecEncoder(n_items, max_len, config)
    elif name == "GRU4Rec":
        encoder = GRU4RecEncoder(n_items, max_len, config)
    else:
        raise ConfigError(f"Unknown backbone '{name}': choose one of {', '.join(BACKBONES)}.")
    if config["fast_dropout"] is not False:
        use_fast_dropout(encoder)
    return encoder
