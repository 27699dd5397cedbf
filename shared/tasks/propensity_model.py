"""The purchase-propensity network: a GRU over the session's recent events plus the
candidate event, joined with the numeric session/item features.

It is a transformers `PretrainedConfig` + `PreTrainedModel` pair so checkpoints use the
same save_pretrained / from_pretrained / safetensors path as the text models; the
classes are shopflow's own and are imported directly, never via trust_remote_code.
The config also carries the encoder's fitted state (feature list, means, stds), so a
checkpoint folder is self-contained.

    config = PropensityConfig(numeric_mean=[...], numeric_std=[...])
    model = PropensityModel(config)
    model.save_pretrained(folder)           # config.json + model.safetensors
    PropensityModel.from_pretrained(folder)
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence
from transformers import PretrainedConfig, PreTrainedModel
from transformers.modeling_outputs import SequenceClassifierOutput

from shared.features import HISTORY_LENGTH
from shared.schemas import EVENT_TYPES

# Numeric inputs and how each is squashed before standardizing: counts and durations
# are heavy-tailed, so log1p keeps one power user from dominating a batch.
NUMERIC_FEATURES: tuple[tuple[str, str], ...] = (
    ("session_event_index", "log1p"),
    ("seconds_since_session_start", "log1p"),
    ("seconds_since_prev_event", "log1p"),
    ("prior_views", "log1p"),
    ("prior_carts", "log1p"),
    ("prior_favorites", "log1p"),
    ("prior_purchases", "log1p"),
    ("prior_searches", "log1p"),
    ("prior_item_interactions", "log1p"),
    ("prior_category_interactions", "log1p"),
    ("distinct_items_before", "log1p"),
    ("hour_of_day", "identity"),
    ("item_views", "log1p"),
    ("item_carts", "log1p"),
    ("item_purchases", "log1p"),
    ("item_cart_rate", "identity"),
    ("item_purchase_rate", "identity"),
)


class PropensityConfig(PretrainedConfig):
    model_type = "shopflow-propensity"

    def __init__(
        self,
        history_length: int = HISTORY_LENGTH,
        event_types: list[str] | None = None,
        id_buckets: int = 8192,
        embed_dim: int = 32,
        hidden_dim: int = 64,
        dropout: float = 0.1,
        numeric_features: list[str] | None = None,
        numeric_transforms: list[str] | None = None,
        numeric_mean: list[float] | None = None,
        numeric_std: list[float] | None = None,
        **kwargs: Any,
    ) -> None:
        kwargs.setdefault("num_labels", 2)
        super().__init__(**kwargs)
        self.history_length = history_length
        self.event_types = list(event_types or EVENT_TYPES)
        self.id_buckets = id_buckets
        self.embed_dim = embed_dim
        self.hidden_dim = hidden_dim
        self.dropout = dropout
        self.numeric_features = list(numeric_features or [n for n, _ in NUMERIC_FEATURES])
        self.numeric_transforms = list(numeric_transforms or [t for _, t in NUMERIC_FEATURES])
        n = len(self.numeric_features)
        self.numeric_mean = list(numeric_mean or [0.0] * n)
        self.numeric_std = list(numeric_std or [1.0] * n)


class PropensityModel(PreTrainedModel):
    """Inputs are built by `shared.tasks.propensity_encoder.PropensityEncoder`.

    Sequences are right-aligned: position -1 is the candidate (the viewed item, type
    token "candidate"), the positions before it the session history (most recent last);
    0 ids are padding.
    """

    config_class = PropensityConfig
    base_model_prefix = "propensity"
    main_input_name = "event_type_ids"

    def __init__(self, config: PropensityConfig) -> None:
        super().__init__(config)
        e, h = config.embed_dim, config.hidden_dim
        # 0 = padding, 1 = the candidate (the viewed item; its type is never an input),
        # 2 = unknown type, 3.. = known event types of the history.
        self.type_embedding = nn.Embedding(len(config.event_types) + 3, e, padding_idx=0)
        self.item_embedding = nn.Embedding(config.id_buckets + 1, e, padding_idx=0)
        self.category_embedding = nn.Embedding(config.id_buckets + 1, e, padding_idx=0)
        # Whether a history event touched the candidate's item / category (0 pad, 1 no, 2 yes):
        # the ids themselves are hashed and mostly unseen, the match is what carries over.
        self.match_embedding = nn.Embedding(3, e, padding_idx=0)
        self.gru = nn.GRU(e, h, batch_first=True)
        n_numeric = len(config.numeric_features)
        self.numeric = nn.Sequential(nn.Linear(n_numeric, h), nn.ReLU())
        self.head = nn.Sequential(
            nn.Dropout(config.dropout),
            nn.Linear(2 * h + 2 * e, h),
            nn.ReLU(),
            nn.Dropout(config.dropout),
            nn.Linear(h, config.num_labels),
        )
        self.post_init()

    def _init_weights(self, module: nn.Module) -> None:
        if isinstance(module, nn.Linear):
            nn.init.xavier_uniform_(module.weight)
            nn.init.zeros_(module.bias)
        elif isinstance(module, nn.Embedding):
            nn.init.normal_(module.weight, std=0.05)
            if module.padding_idx is not None:
                with torch.no_grad():
                    module.weight[module.padding_idx].zero_()

    def forward(
        self,
        event_type_ids: torch.Tensor,
        item_ids: torch.Tensor,
        category_ids: torch.Tensor,
        item_match: torch.Tensor,
        category_match: torch.Tensor,
        numeric: torch.Tensor,
        labels: torch.Tensor | None = None,
        **_: Any,
    ) -> SequenceClassifierOutput:
        ids = (event_type_ids, item_ids, category_ids, item_match, category_match)
        if torch.is_grad_enabled():
            sequence = self.gru(self._tokens(*ids))[1][-1]
        else:
            sequence = self._sequence_skipping_padding(ids)
        candidate = torch.cat(
            [self.item_embedding(item_ids[:, -1]), self.category_embedding(category_ids[:, -1])], dim=-1
        )
        joined = torch.cat([sequence, self.numeric(numeric), candidate], dim=-1)
        logits = self.head(joined)
        loss = None
        if labels is not None:
            loss = nn.functional.cross_entropy(logits, labels)
        return SequenceClassifierOutput(loss=loss, logits=logits)

    def _tokens(
        self,
        event_type_ids: torch.Tensor,
        item_ids: torch.Tensor,
        category_ids: torch.Tensor,
        item_match: torch.Tensor,
        category_match: torch.Tensor,
    ) -> torch.Tensor:
        """The GRU's input per slot: the sum of the slot's five embeddings."""
        return (
            self.type_embedding(event_type_ids)
            + self.item_embedding(item_ids)
            + self.category_embedding(category_ids)
            + self.match_embedding(item_match)
            + self.match_embedding(category_match)
        )

    def _sequence_skipping_padding(self, ids: tuple[torch.Tensor, ...]) -> torch.Tensor:
        """The GRU's last hidden state per row, as `self.gru(self._tokens(*ids))` gives
        it, without running the GRU over the left padding (scoring: most views come early
        in a session, and a stream backlog's sequences were 94 % padding).

        Every padding slot holds the same token, so the state after p padding slots is
        the same for every row: it is computed once (one row, p steps), and each row's
        GRU starts there and runs over its real slots only, shifted to the left (a packed
        sequence). Rows whose padding is not all on the left go the plain way. Tested
        equal to the plain GRU.
        """
        rows, length = ids[0].shape
        is_pad = ids[0] == 0
        for column in ids[1:]:
            is_pad &= column == 0
        pads = is_pad.sum(dim=1)
        positions = torch.arange(length, device=ids[0].device)
        left_aligned = torch.equal(is_pad, positions.unsqueeze(0) < pads.unsqueeze(1))
        most = int(pads.max()) if rows else 0
        if not left_aligned or most == 0 or most >= length:
            return self.gru(self._tokens(*ids))[1][-1]
        longest = length - int(pads.min())
        shifted = (positions[:longest].unsqueeze(0) + pads.unsqueeze(1)).clamp(max=length - 1)
        real = self._tokens(*(column.gather(1, shifted) for column in ids))
        pad_token = self._tokens(*(column.new_zeros(1) for column in ids))  # (1, embed)
        after_padding = self.gru(pad_token.expand(most, -1).unsqueeze(0))[0][0]  # (most, hidden)
        start = torch.cat([after_padding.new_zeros(1, after_padding.shape[1]), after_padding])[pads]
        packed = pack_padded_sequence(real, (length - pads).cpu(), batch_first=True, enforce_sorted=False)
        return self.gru(packed, start.unsqueeze(0).contiguous())[1][-1]
