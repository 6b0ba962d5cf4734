"""``line_cnn_emnist_lines`` on lines a 2-core machine can search in 30 minutes: at most
14 characters (448 pixels), 6,000 training lines.  The searched parameters are the space's."""

import importlib.util
from pathlib import Path

_path = Path(__file__).resolve().parents[2] / "search_spaces" / "line_cnn_emnist_lines.py"
_spec = importlib.util.spec_from_file_location("line_cnn_emnist_lines", _path)
_space = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_space)

LINES = {"max_length": 16, "num_train_lines": 6000, "num_val_lines": 600, "num_test_lines": 1000}
DEFAULTS = {**_space.DEFAULTS, "fixed": {**_space.DEFAULTS["fixed"], **LINES}}
space = _space.space
