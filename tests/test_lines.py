"""The line recognizer: CTC decoding and CER by hand, a real search on lines drawn from the
EMNIST sample, retrain + export + predict on a rendered line, and bad input."""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from tests.conftest import SHARED_DATA, run_main, skip_or_fail
from textsearch.models.ctc import BLANK, ctc_targets, greedy_decode, label_tokens, min_steps

SPACES = Path(__file__).parent / "spaces"
A, B, C = 10, 11, 12  # token indices of three characters (in the test's mapping: '6', '7', '8')


def scores_for(paths: list[list[int]], num_classes: int = 20) -> torch.Tensor:
    """(B, C, T) scores whose best path is ``paths`` (one token index per step)."""
    out = torch.zeros(len(paths), num_classes, len(paths[0]))
    for i, path in enumerate(paths):
        for t, token in enumerate(path):
            out[i, token, t] = 5.0
    return out


def test_greedy_decode_collapses_repeats_then_drops_blanks():
    paths = [
        [A, A, BLANK, A, B, B, BLANK],  # a repeat collapses; a blank separates two a's
        [BLANK] * 7,  # nothing read: the empty text
        [BLANK, C, C, C, BLANK, BLANK, C],  # c c
        [A, 1, A, 2, 3, B, B],  # <S>, <E>, <P> are no characters: dropped like blanks
    ]
    assert greedy_decode(scores_for(paths)) == [[A, A, B], [], [C, C], [A, A, B]]


def test_ctc_targets_and_steps_from_line_labels():
    # <S> a a b <E> <P> <P>  and  <S> <E> <P> ... (an empty line)
    labels = torch.tensor([[1, A, A, B, 2, 3, 3], [1, 2, 3, 3, 3, 3, 3]])
    targets, lengths = ctc_targets(labels)
    assert lengths.tolist() == [3, 0]
    assert targets[0, :3].tolist() == [A, A, B]
    assert label_tokens(labels) == [[A, A, B], []]
    assert [min_steps([A, A, B]), min_steps([A, B, C]), min_steps([]), min_steps([A, A, A])] \
        == [4, 3, 0, 5]


class FixedReading(torch.nn.Module):
    """A stand-in line model whose reading of line i is fixed (its image is filled with i)."""

    def __init__(self, scores: torch.Tensor):
        super().__init__()
        self.scores = torch.nn.Parameter(scores, requires_grad=False)

    def forward(self, x):
        return self.scores[x[:, 0, 0, 0].long()]


def test_validation_cer_and_line_accuracy_by_hand():
    """Lightning validates a line model whose readings are fixed; CER and line accuracy must
    be the figures worked out by hand."""
    import pytorch_lightning as pl
    from torch.utils.data import DataLoader, TensorDataset

    from textsearch.lit_model import LineLitModel

    mapping = ["<B>", "<S>", "<E>", "<P>", *"0123456789abcdefghij"]
    # what each line reads, what it truly says, and its edits counted by hand:
    paths = [[A, BLANK, A, B, BLANK, BLANK, BLANK],  # "aab"  for "aab": 0
             [BLANK] * 7,                            # ""     for "ab":  2 deletions
             [C, C, BLANK, A, A, BLANK, BLANK],      # "ca"   for "cab": 1 deletion
             [A, C, B, BLANK, BLANK, BLANK, BLANK],  # "acb"  for "aab": 1 substitution
             [A, B, C, A, BLANK, BLANK, BLANK],      # "abca" for "ab":  2 insertions
             [B, BLANK, A, BLANK, BLANK, BLANK, BLANK]]  # "ba" for "abc": 1 insertion + 1
    #                                                  substitution (-ba against abc)
    truth = [[A, A, B], [A, B], [C, A, B], [A, A, B], [A, B], [A, B, C]]
    labels = torch.tensor([[1, *t, 2] + [3] * (5 - len(t)) for t in truth])
    lit = LineLitModel(FixedReading(scores_for(paths, len(mapping))), len(mapping), mapping)
    # one line per batch: the CER must be summed over the split, not averaged over batches
    # (that would be (0 + 1 + 1/3 + 1/3 + 1 + 2/3) / 6 = 0.556)
    images = torch.arange(6.0).view(6, 1, 1, 1).expand(6, 1, 28, 40)
    loader = DataLoader(TensorDataset(images, labels), batch_size=1)
    trainer = pl.Trainer(accelerator="cpu", logger=False, enable_progress_bar=False,
                         enable_model_summary=False)
    out = trainer.validate(lit, dataloaders=loader, verbose=False)[0]
    edits, chars = 0 + 2 + 1 + 1 + 2 + 2, 3 + 2 + 3 + 3 + 2 + 3
    assert out["val_cer"] == pytest.approx(edits / chars)  # 8 / 16
    assert out["val_line_acc"] == pytest.approx(1 / 6)
    assert math.isfinite(out["val_loss"]) and out["val_loss"] > 0


@pytest.fixture
def real_lines(shared_root, monkeypatch):
    """The EMNIST sample's characters and NLTK's real Brown corpus, for lines."""
    brown = SHARED_DATA / "nltk_data"
    if not (brown / "corpora" / "brown.zip").exists():
        skip_or_fail(f"NLTK's Brown corpus is not at {brown}")
    import nltk

    monkeypatch.setenv("TEXTSEARCH_DATA_DIR", str(shared_root))
    monkeypatch.setenv("NLTK_DATA", str(brown))
    monkeypatch.setattr(nltk.data, "path", [str(brown)])
    return shared_root


def progress_rows(trial_dir: Path) -> list[dict[str, str]]:
    with (trial_dir / "progress.csv").open() as f:
        return list(csv.DictReader(f))


def render_png(path: Path, glyphs: list[np.ndarray], gap: int = 4) -> None:
    """EMNIST glyphs (light on dark) side by side, saved as dark ink on light paper."""
    from PIL import Image

    height = glyphs[0].shape[0]
    canvas = np.zeros((height, sum(g.shape[1] + gap for g in glyphs) + 12), dtype=np.uint8)
    x = 6
    for g in glyphs:
        canvas[:, x:x + g.shape[1]] = g
        x += g.shape[1] + gap
    Image.fromarray(255 - canvas).resize((canvas.shape[1] * 2, height * 2)).save(path)


def test_line_search_retrain_and_predict(real_lines, tmp_path, capsys):
    """A real search of lines minimises val_cer; a window too coarse for CTC fails its
    trial with the reason; the winner is retrained, exported and reads a rendered line."""
    from optuna.study import StudyDirection
    from optuna.trial import TrialState

    from textsearch.predict import main as predict_main
    from textsearch.retrain import main as retrain_main
    from textsearch.study import load_study
    from textsearch.tune import main as tune_main

    code, err = run_main(tune_main, [
        "--space", str(SPACES / "lines_tiny.py"), "--results_dir", str(tmp_path), "--name", "l",
        "--num_samples", "3", "--max_failures", "0", "--gpus_per_trial", "0", "--no_report"],
        capsys)
    assert code == 0, err
    search = tmp_path / "l"
    summary = json.loads((search / "summary.json").read_text())
    study = load_study(search)
    assert study.direction == StudyDirection.MINIMIZE
    by_number = {t.number: t for t in study.trials}
    assert len(by_number) == 3
    # the too-coarse window: a FAIL trial whose error names the cause, not a NaN loss
    failed = by_number[2]
    assert failed.state == TrialState.FAIL
    row = next(t for t in summary["trials"] if t["number"] == 2)
    assert row["status"] == "errored" and "output steps" in row["error"]
    assert not (search / "trial_0002" / "progress.csv").exists()
    # the others: every epoch's val_cer told to Optuna as logged in the trial's folder
    lowest = {}
    for number in (0, 1):
        rows = progress_rows(search / f"trial_{number:04d}")
        cers = {int(r["epoch"]): float(r["val_cer"]) for r in rows}
        assert rows and all(0.0 <= c for c in cers.values())
        # the lines came from the driver through Ray's object store: a read-only view, no copy
        assert all(float(r["data_shared"]) == 1.0 for r in rows)
        assert by_number[number].intermediate_values == pytest.approx(cers)
        assert by_number[number].state in (TrialState.COMPLETE, TrialState.PRUNED)
        lowest[number] = min(cers.values())
    best = summary["best"]
    expected = min(lowest, key=lambda n: (lowest[n], n))  # lowest val_cer, ties to the earlier
    assert best["trial_id"] == f"{expected:04d}"
    assert best["val_cer"] == pytest.approx(lowest[expected])
    assert best["test_cer"] is not None and best["test_line_acc"] is not None

    # the report of this minimised metric: the lowest val_cer is the best, and the best so far
    # against trials (in order of first report) only falls: a running minimum, by hand
    from textsearch.plots import best_by_trial, load_search
    from textsearch.report import main as report_main

    code, err = run_main(report_main, [str(search)], capsys)
    assert code == 0, err
    page = (search / "report.html").read_text()
    assert f"val_cer = <b>{lowest[expected]:.4f}</b>" in page
    assert all((search / f"plot_{name}.png").stat().st_size > 5_000
               for name in ("best_vs_time", "best_vs_trials", "curves"))
    first_report = {n: float(progress_rows(search / f"trial_{n:04d}")[0]["timestamp"])
                    for n in lowest}
    order = sorted(lowest, key=first_report.get)
    by_hand = [lowest[order[0]], min(lowest.values())]
    assert list(best_by_trial(load_search(search))) == pytest.approx(by_hand)

    # retrain the winner, export it, and read a line rendered from known characters
    code, err = run_main(retrain_main, [str(search), "--max_epochs", "1", "--no_progress"],
                         capsys)
    assert code == 0, err
    out = search / "retrain" / best["trial_id"]
    info = json.loads((out / "model.json").read_text())
    assert info["input"]["kind"] == "line" and info["input"]["height"] == 28
    assert info["input"]["max_width"] == 28 * 10 and info["input"]["blank"] == 0
    assert info["mapping"][0] == "<B>"
    from textsearch.data import EMNIST

    chars = EMNIST().get_bundle()
    glyphs = [chars.x_test[list(chars.y_test).index(chars.mapping.index(c))] for c in "To be"
              if c != " "]
    png = tmp_path / "line.png"
    render_png(png, glyphs)
    capsys.readouterr()
    code = predict_main([str(out), str(png)])
    printed = capsys.readouterr().out.rstrip("\n")
    assert code == 0 and printed.startswith(f"{png}: ") and "\n" not in printed
    read = printed.removeprefix(f"{png}: ")
    code, err = run_main(predict_main, [str(out), str(png), "--top", "2"], capsys)
    assert code == 2 and len(err.strip().splitlines()) == 1 and "--top 2" in err

    # the same array through the TorchScript file alone, decoded by hand
    from PIL import Image

    scripted = torch.jit.load(str(out / "model.pt"))
    with Image.open(png) as img:
        gray = img.convert("L")
        width = round(gray.size[0] * 28 / gray.size[1])
        x = 1.0 - np.asarray(gray.resize((width, 28), Image.Resampling.LANCZOS),
                             dtype=np.float32) / 255.0
    from textsearch.predict import read_line

    assert np.allclose(read_line(png, 28, 280, 16), x, atol=1e-6)  # what predict feeds it
    with torch.inference_mode():
        best_path = scripted(torch.from_numpy(x)[None, None]).argmax(dim=1)[0].tolist()
    by_hand = [t for i, t in enumerate(best_path) if t >= 4 and (i == 0 or best_path[i - 1] != t)]
    assert read == "".join(info["mapping"][t] for t in by_hand)


LINE = ["--model_class", "LineCNN", "--data_class", "EMNISTLines", "--max_length", "10",
        "--num_train_lines", "40", "--num_val_lines", "10", "--num_test_lines", "10"]


@pytest.mark.parametrize("args, says", [
    (["--window_width", "400"], "window_width 400 is wider than the line (280 pixels"),
    (["--window_width", "112", "--window_stride", "112"], "output steps"),
    (["--data_class", "EMNIST"], "reads whole lines: use --data_class EMNISTLines"),
    (["--model_class", "CNN"], "classifies single characters"),
    (["--window_stride", "30", "--window_width", "20"], "larger than window_width"),
])
def test_line_bad_input_is_one_line(args, says, tmp_path, capsys):
    from textsearch.train import main as train_main

    code, err = run_main(train_main, [*LINE, *args, "--runs_dir", str(tmp_path / "r")], capsys)
    assert code == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and says in lines[0], err
    assert not (tmp_path / "r").exists() or not any((tmp_path / "r").rglob("*.ckpt"))


def test_debug_run_refuses_a_window_too_coarse(tmp_path, capsys):
    from textsearch.tune import main as tune_main

    code, err = run_main(tune_main, ["--space", str(SPACES / "lines_tiny.py"), "--debug",
                                     "--set", "window_width=112", "--set", "window_stride=112",
                                     "--results_dir", str(tmp_path)], capsys)
    assert code == 2, err
    assert len(err.strip().splitlines()) == 1 and "output steps" in err


def test_line_objectives_reach_optuna_minimised(tmp_path):
    """``--objectives val_cer:min,infer_ms_per_image:min``: both minimised in the study."""
    from optuna.trial import TrialState

    from textsearch import spaces
    from textsearch.metrics import parse_objectives
    from textsearch.record import SearchSettings
    from textsearch.search import make_searcher
    from textsearch.study import load_study, pareto_front

    objectives = parse_objectives("val_cer:min,infer_ms_per_image:min", "--objectives")
    assert objectives == [("val_cer", "min"), ("infer_ms_per_image", "min")]
    space = spaces.load(str(SPACES / "lines_tiny.py"))
    settings = SearchSettings(space="lines_tiny", space_source=str(SPACES / "lines_tiny.py"),
                              name="o", results_dir=str(tmp_path), num_samples=3, max_epochs=1,
                              grace_period=1, reduction_factor=2, metric="val_cer", mode="min",
                              objectives=[list(o) for o in objectives])
    searcher = make_searcher(settings, space)
    results = {"a": (0.30, 2.0), "b": (0.20, 3.0), "c": (0.35, 2.5)}  # c is dominated by a
    for trial_id, (cer, ms) in results.items():
        assert isinstance(searcher.suggest(trial_id), dict)
        report = {"val_cer": cer, "infer_ms_per_image": ms, "epoch": 1}
        searcher.on_trial_result(trial_id, report)
        searcher.on_trial_complete(trial_id, report)
    study = load_study(tmp_path / "o")
    assert [d.name for d in study.directions] == ["MINIMIZE", "MINIMIZE"]
    assert all(t.state == TrialState.COMPLETE for t in study.trials)
    front = {p["number"] for p in pareto_front(study, objectives)}
    assert front == {searcher.number_of("a"), searcher.number_of("b")}


# -- the line recognizer's quality, against lines the test drew itself ------------------------
DIGIT_TEXTS = ["4 815 16", "2342", "90 210", "1 2 3", "8675 309", "77 31", "50 6", "1961 42"]


def edit_distance(a: str, b: str) -> int:
    """Levenshtein distance (substitutions, insertions, deletions), by dynamic programming."""
    row = list(range(len(b) + 1))
    for i, ca in enumerate(a, 1):
        prev, row[0] = row[0], i
        for j, cb in enumerate(b, 1):
            prev, row[j] = row[j], min(row[j] + 1, row[j - 1] + 1, prev + (ca != cb))
    return row[-1]


def test_edit_distance_by_hand():
    assert edit_distance("aab", "aab") == 0
    assert edit_distance("", "ab") == 2 and edit_distance("abca", "ab") == 2
    assert edit_distance("acb", "aab") == 1 and edit_distance("ba", "abc") == 2
    assert edit_distance("kitten", "sitting") == 3


def write_digit_corpus(nltk_dir: Path, n: int = 300, seed: int = 0) -> None:
    """A Brown-format corpus of digit words only (every character has a glyph)."""
    import random
    import zipfile

    rng = random.Random(seed)
    words = ["".join(rng.choice("0123456789") for _ in range(rng.randint(1, 4)))
             for _ in range(n * 6)]
    text = "\n\n".join(" ".join(f"{w}/cd" for w in words[i:i + 6]) for i in range(0, len(words), 6))
    corpora = nltk_dir / "corpora"
    corpora.mkdir(parents=True)
    with zipfile.ZipFile(corpora / "brown.zip", "w") as zf:
        zf.writestr("brown/", "")
        zf.writestr("brown/ca01", "\n\n\t" + text + "\n")
        zf.writestr("brown/cats.txt", "ca01 news\n")
        zf.writestr("brown/README", "digits\n")


def draw_line(text: str, glyphs: dict[str, list[np.ndarray]], rng: np.random.Generator,
              width: int, overlap: float = 0.1) -> np.ndarray:
    """``text`` drawn as a scan would show it: 28-pixel-high glyphs (light on dark) side by
    side, each overlapping the next by ``overlap`` of its width, spaces blank; returned as
    dark ink on light paper."""
    canvas = np.zeros((28, width), dtype=np.int32)
    step, x = 28 - int(overlap * 28), 0
    for ch in text:
        if ch != " ":
            options = glyphs[ch]
            canvas[:, x:x + 28] += options[rng.integers(len(options))]
        x += step
    return (255 - np.minimum(canvas, 255)).astype(np.uint8)


@pytest.fixture
def digit_lines(tmp_path_factory, monkeypatch):
    """A data root of the test's own: synthetic digit glyphs and a corpus of digit words."""
    from tests.synthetic import write_emnist

    root = tmp_path_factory.mktemp("digit-lines")
    write_emnist(root / "downloaded" / "emnist", n_train=2000, n_test=400)
    write_digit_corpus(root / "nltk")
    import nltk

    monkeypatch.setenv("TEXTSEARCH_DATA_DIR", str(root))
    monkeypatch.setenv("NLTK_DATA", str(root / "nltk"))
    monkeypatch.setattr(nltk.data, "path", [str(root / "nltk")])
    return root


CER_BOUND = 0.15  # at most about one character in seven read wrong (reading nothing: 1.0)


def test_line_model_reads_lines_it_never_saw(digit_lines, tmp_path, capsys):
    """A line model searched, retrained and exported on drawn digit lines reads held-out
    lines (glyphs drawn from another seed than training's and test's, texts chosen here)
    with a character error rate under CER_BOUND, counted here against the drawn text."""
    from PIL import Image

    from tests.synthetic import make_images
    from textsearch.predict import main as predict_main
    from textsearch.retrain import main as retrain_main
    from textsearch.tune import main as tune_main

    code, err = run_main(tune_main, [
        "--space", str(SPACES / "lines_digits.py"), "--results_dir", str(tmp_path),
        "--name", "d", "--scheduler", "fifo", "--gpus_per_trial", "0", "--no_report"], capsys)
    assert code == 0, err
    search = tmp_path / "d"
    code, err = run_main(retrain_main, [str(search), "--max_epochs", "6", "--no_progress"], capsys)
    assert code == 0, err
    (out,) = (search / "retrain").iterdir()
    info = json.loads((out / "model.json").read_text())
    assert info["metrics"]["test_cer"] < CER_BOUND  # the test split's lines, test glyphs

    x, y = make_images(300, seed=99)  # neither the training (1) nor the test (2) glyphs
    glyphs = {str(d): [x[i] for i in np.flatnonzero(y == d)] for d in range(10)}
    rng = np.random.default_rng(5)
    pngs = []
    for i, text in enumerate(DIGIT_TEXTS):
        pngs.append(tmp_path / f"line{i}.png")
        Image.fromarray(draw_line(text, glyphs, rng, width=28 * 10)).save(pngs[-1])
    capsys.readouterr()
    code = predict_main([str(out), *map(str, pngs)])
    printed = capsys.readouterr().out.splitlines()
    assert code == 0 and len(printed) == len(DIGIT_TEXTS)
    read = [line.removeprefix(f"{png}: ") for line, png in zip(printed, pngs)]
    errors = sum(edit_distance(r, t) for r, t in zip(read, DIGIT_TEXTS))
    chars = sum(len(t) for t in DIGIT_TEXTS)
    assert errors / chars < CER_BOUND, list(zip(DIGIT_TEXTS, read))
