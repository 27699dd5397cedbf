"""Scoring skips the GRU over left padding and gets the logits the plain GRU gives."""

from __future__ import annotations

import pytest
import torch

from shared.tasks.propensity_model import PropensityConfig, PropensityModel


def _inputs(rows: int, pads: list[int], seed: int) -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    length = 9
    real = torch.arange(length).unsqueeze(0) >= torch.tensor(pads).unsqueeze(1)  # right-aligned

    def ids(high: int) -> torch.Tensor:
        return torch.randint(1, high, (rows, length), generator=generator) * real

    return {
        "event_type_ids": ids(8),
        "item_ids": ids(8193),
        "category_ids": ids(8193),
        "item_match": ids(3),
        "category_match": ids(3),
        "numeric": torch.randn(rows, 17, generator=generator),
    }


def _model(seed: int, zero_padding_rows: bool = True) -> PropensityModel:
    torch.manual_seed(seed)
    model = PropensityModel(PropensityConfig()).eval()
    if not zero_padding_rows:  # the padding token need not be a zero vector
        with torch.no_grad():
            for embedding in (model.type_embedding, model.item_embedding, model.match_embedding):
                embedding.weight[0].normal_()
    return model


@pytest.mark.parametrize("zero_padding_rows", [True, False])
def test_scoring_logits_equal_the_plain_grus_for_every_amount_of_padding(zero_padding_rows):
    model = _model(1, zero_padding_rows)
    pads = [p % 9 for p in range(200)]
    batch = _inputs(len(pads), pads, seed=2)
    with torch.enable_grad():
        plain = model(**batch).logits.detach()
    with torch.inference_mode():
        skipping = model(**batch).logits
    torch.testing.assert_close(skipping, plain, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("pads", [[0, 0, 0], [8, 8], [3], [9, 2], []])
def test_batches_without_padding_all_padding_or_empty_take_the_plain_path_and_agree(pads):
    model = _model(3)
    batch = _inputs(len(pads), pads, seed=4)
    with torch.enable_grad():
        plain = model(**batch).logits.detach()
    with torch.no_grad():
        torch.testing.assert_close(model(**batch).logits, plain, atol=1e-5, rtol=1e-5)


def test_padding_that_is_not_on_the_left_takes_the_plain_path():
    model = _model(5)
    batch = _inputs(4, [2, 0, 5, 1], seed=6)
    for name in ("event_type_ids", "item_ids", "category_ids", "item_match", "category_match"):
        batch[name][1, 4] = 0  # a hole in the middle of row 1
    with torch.enable_grad():
        plain = model(**batch).logits.detach()
    with torch.no_grad():
        torch.testing.assert_close(model(**batch).logits, plain, atol=1e-5, rtol=1e-5)
