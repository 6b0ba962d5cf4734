"""EMNIST Lines: sentences from a (tiny) Brown corpus drawn with EMNIST characters."""

from __future__ import annotations

import numpy as np
import pytest

from textsearch.data import EMNISTLines
from textsearch.data.emnist_lines import CHAR_SIZE, LinesConfig, prepare, render_line
from textsearch.data.sentences import SentenceGenerator, brown_text
from textsearch.errors import UserError


def test_brown_text_comes_from_nltk_data():
    text = brown_text()
    assert text.startswith("The quick brown fox") and "." not in text and "  " not in text


def test_sentence_generator_respects_max_length_and_word_bounds():
    gen = SentenceGenerator(20, seed=1)
    words = set(brown_text().split())
    for _ in range(200):
        s = gen.generate()
        assert 0 < len(s) <= 20
        assert all(w in words for w in s.split())


def test_render_line_overlap():
    ones = {"a": np.full((1, 28, 28), 100, dtype=np.uint8)}
    rng = np.random.default_rng(0)
    no_overlap = render_line("aa", ones, 0.0, 28 * 4, rng)
    assert no_overlap[:, :56].min() == 100 and no_overlap[:, 56:].max() == 0
    half = render_line("aa", ones, 0.5, 28 * 4, rng)
    assert half[0, 14:28].tolist() == [200] * 14  # the overlapping strip adds up
    assert half[:, 42:].max() == 0


def test_lines_dataset_labels_and_images():
    cfg = LinesConfig(max_length=16, num_train_lines=40, num_val_lines=10, num_test_lines=10, lines_seed=3)
    dm = EMNISTLines(lines=cfg)
    b = dm.get_bundle()
    assert b.x_trainval.shape == (50, CHAR_SIZE, CHAR_SIZE * 16) and b.y_trainval.shape == (50, 16)
    inv = {c: i for i, c in enumerate(b.mapping)}
    for row in b.y_trainval:
        assert row[0] == inv["<S>"]
        end = list(row).index(inv["<E>"])
        assert all(t == inv["<P>"] for t in row[end + 1:])
        assert end - 1 <= 14
    dm.setup()
    assert len(dm.data_train) == 40 and len(dm.data_val) == 10
    assert "input dims: (1, 28, 448)" in dm.summary()


def test_cache_is_keyed_by_parameters():
    a = prepare(LinesConfig(max_length=8, num_train_lines=5, num_val_lines=2, num_test_lines=2))
    b = prepare(LinesConfig(max_length=8, num_train_lines=5, num_val_lines=2, num_test_lines=2, max_overlap=0.5))
    assert a != b
    assert prepare(LinesConfig(max_length=8, num_train_lines=5, num_val_lines=2, num_test_lines=2)) == a


@pytest.mark.parametrize("kw", [{"max_length": 2}, {"min_overlap": 0.5, "max_overlap": 0.2},
                                {"num_train_lines": 0}, {"max_overlap": 1.0}])
def test_bad_line_parameters(kw):
    with pytest.raises(UserError):
        LinesConfig(**kw).validate()


def test_missing_corpus_offline_is_a_clear_error(fresh_root, monkeypatch, tmp_path):
    import nltk

    monkeypatch.setattr(nltk.data, "path", [str(tmp_path / "empty")])
    monkeypatch.setenv("https_proxy", "http://127.0.0.1:9")
    with pytest.raises(UserError, match="NLTK_DATA"):
        brown_text()
