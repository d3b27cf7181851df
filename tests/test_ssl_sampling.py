"""The embedded encoder's SimCLR step draws tiles by weight (each tissue equally often) or uniformly."""

import pytest
import torch

from napari_pathalign.train import ssl


def test_weighted_draws_follow_the_weights_and_bad_weights_are_refused(monkeypatch):
    tiles = torch.randint(0, 255, (6, 3, 96, 96), dtype=torch.uint8)
    drawn = []
    augment = ssl.augment

    def spy(batch, cfg, g):
        drawn.append(batch)
        return augment(batch, cfg, g)

    monkeypatch.setattr(ssl, "augment", spy)
    weights = torch.tensor([0.0, 0.0, 0.0, 0.0, 1.0, 0.0])  # only tile 4 may be drawn
    cfg = ssl.SSLConfig(minutes=0.002, batch_size=4)
    encoder, summary = ssl.train_ssl(tiles, cfg, log=lambda *_: None, weights=weights)
    assert summary["steps"] >= 1 and not encoder.training
    assert all(torch.equal(b, tiles[[4, 4, 4, 4]]) for b in drawn)
    for bad in (torch.ones(5), torch.zeros(6), torch.tensor([1.0, -1, 1, 1, 1, 1])):
        with pytest.raises(ValueError, match="non-negative"):
            ssl.train_ssl(tiles, cfg, weights=bad)
