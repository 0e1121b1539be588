"""The shipped backbone's files agree with its card; the card renders the recipe and transfer evidence."""
from __future__ import annotations

import json

import numpy as np

from edgexfer.manifest import sha256_file
from edgexfer.train.pretraining import (
    CARD_JSON,
    CARD_MD,
    SOURCE_HEAD_FILE,
    attach_transfer,
    load_source_head,
    write_card,
)
from edgexfer.train.shipped import SHIPPED_DIR, WEIGHTS_FILE, models_dir


def test_shipped_files_match_the_card():
    folder = models_dir() / SHIPPED_DIR
    card = json.loads((folder / CARD_JSON).read_text())
    assert sha256_file(folder / WEIGHTS_FILE) == card["sha256"]
    assert (folder / WEIGHTS_FILE).stat().st_size == card["size_bytes"] < 5_000_000
    kernel, bias = load_source_head(folder / SOURCE_HEAD_FILE)
    assert kernel.shape == (card["feature_dim"], 10) and bias.shape == (10,)
    assert 0.5 < card["source_test_accuracy"] <= 1.0
    assert "randomize_digits" in card["recipe"]["augmentation"]


def test_card_renders_recipe_and_attached_transfer_table(tmp_path):
    card = json.loads((models_dir() / SHIPPED_DIR / CARD_JSON).read_text())
    card.pop("transfer", None)
    write_card(tmp_path, card)
    assert "not measured yet" in (tmp_path / CARD_MD).read_text()
    attach_transfer(tmp_path, {"source": "x.json", "seeds": 3, "methods": ["frozen", "scratch"],
                               "rows": [{"domain": "mnist_m", "k": 10, "accuracy": [0.7, None]}]})
    text = (tmp_path / CARD_MD).read_text()
    assert "| mnist_m | 10 | 70.0 | - |" in text and "3 seeds" in text
    assert json.loads((tmp_path / CARD_JSON).read_text())["transfer"]["seeds"] == 3


def test_source_head_round_trip(tmp_path):
    import keras

    from edgexfer.train.pretraining import save_source_head

    layer = keras.layers.Dense(10)
    layer.build((None, 6))
    save_source_head(layer, tmp_path / "head.npz")
    kernel, bias = load_source_head(tmp_path / "head.npz")
    np.testing.assert_array_equal(kernel, layer.get_weights()[0])
    assert kernel.dtype == np.float32 and bias.shape == (10,)
