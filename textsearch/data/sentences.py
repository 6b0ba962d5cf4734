"""Sentences from NLTK's Brown corpus, for synthetic handwriting lines.

NLTK finds its data through ``NLTK_DATA`` and its standard folders.  When the corpus is
nowhere to be found it is downloaded (URL and SHA-256 from ``data/raw/brown/metadata.toml``)
into ``<data root>/downloaded/nltk/corpora/brown.zip``.  The corpus is flattened once into
``processed/brown/brown_text.txt`` (punctuation removed, single spaces).
"""

from __future__ import annotations

import itertools
import re
import string

import numpy as np

from textsearch.data.util import ensure_download
from textsearch.errors import UserError
from textsearch.paths import atomic_path, downloaded_dir, processed_dir


def _ensure_brown() -> None:
    import nltk  # imported when the corpus is first read (its import takes a second or more)

    nltk_dir = downloaded_dir("nltk")
    if str(nltk_dir) not in nltk.data.path:
        nltk.data.path.append(str(nltk_dir))
    try:
        nltk.data.find("corpora/brown.zip")
        return
    except LookupError:
        pass
    try:
        nltk.data.find("corpora/brown")
        return
    except LookupError:
        pass
    hint = (
        "Without network access, set NLTK_DATA to a folder holding corpora/brown.zip, "
        f"or put brown.zip into {nltk_dir / 'corpora'}/"
    )
    ensure_download("brown", nltk_dir / "corpora", hint=hint)


def brown_text() -> str:
    """The whole Brown corpus as one line of words, punctuation removed (cached)."""
    path = processed_dir("brown") / "brown_text.txt"
    if path.exists():
        return path.read_text()
    _ensure_brown()
    from nltk.corpus.reader import CategorizedTaggedCorpusReader
    from nltk.corpus.util import LazyCorpusLoader

    # A loader of its own, as nltk.corpus declares Brown's: nltk.corpus.brown keeps the path
    # it first found for the life of the process, while NLTK_DATA (and so the corpus found)
    # may differ from one data root to the next.
    brown = LazyCorpusLoader("brown", CategorizedTaggedCorpusReader, r"c[a-z]\d\d",
                             cat_file="cats.txt", tagset="brown", encoding="ascii")
    try:
        sents = brown.sents()
        text = " ".join(itertools.chain.from_iterable(sents))
    except (LookupError, OSError) as err:
        raise UserError(f"cannot read NLTK's Brown corpus: {err}") from None
    text = text.translate({ord(c): None for c in string.punctuation})
    text = re.sub(" +", " ", text).strip()
    with atomic_path(path) as tmp:
        tmp.write_text(text)
    return text


class SentenceGenerator:
    """Random word-aligned snippets of the Brown corpus, at most ``max_length`` characters."""

    def __init__(self, max_length: int, text: str | None = None, seed: int = 0):
        if max_length < 1:
            raise UserError(f"max_length must be >= 1, got {max_length}")
        self.text = text if text is not None else brown_text()
        self.max_length = max_length
        starts = [0] + [m.start(0) + 1 for m in re.finditer(" ", self.text)]
        self.word_starts = np.asarray(starts + [len(self.text) + 1], dtype=np.int64)
        self.rng = np.random.default_rng(seed)

    def generate(self) -> str:
        """One snippet: starts at a word, ends before a word, no longer than max_length."""
        for _ in range(1000):
            first = int(self.rng.integers(0, len(self.word_starts) - 1))
            start = self.word_starts[first]
            last = np.searchsorted(self.word_starts, start + self.max_length + 1, side="right")
            candidates = self.word_starts[first + 1 : last]
            if len(candidates):
                end = int(self.rng.choice(candidates))
                return self.text[start:end].strip()
        raise UserError(f"no sentence of at most {self.max_length} characters in the corpus")
