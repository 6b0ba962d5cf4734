"""The Ray cluster a search runs on: connecting to it and Ray's settings for a search.

:func:`init_ray` starts Ray on this machine, or connects to ``--address`` after a fast
check that the address answers (for ``host:port``, with token authentication where the
machine holds a token, as ``--address auto`` would; a ``ray://`` address is left to Ray);
:func:`ray_environment` sets Ray's and Tune's settings for one search and puts the
environment back afterwards; :func:`cluster_resources` says what the cluster holds.  Ray
is imported only inside :func:`init_ray` and after it: Ray reads its authentication mode
when it is imported, so :func:`use_token_auth` must come first.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
from collections.abc import Iterator
from pathlib import Path

from textsearch.errors import UserError
from textsearch.paths import environment_restored


def check_address(address: str, timeout_s: float = 5.0) -> None:
    """Fail fast on an unreachable ``host:port`` or ``ray://host:port`` address."""
    if address == "auto":
        return
    hostport = address.split("://", 1)[-1]
    host, sep, port = hostport.rpartition(":")
    if not sep or not port.isdigit():
        raise UserError(f"--address must be 'auto', 'host:port' or 'ray://host:port', got {address!r}")
    try:
        with socket.create_connection((host, int(port)), timeout=timeout_s):
            pass
    except OSError as err:
        raise UserError(f"cannot reach the Ray cluster at {address}: {err.strerror or err}") from None


class _DropMessages(logging.Filter):
    """Drops a logger's records whose message starts with ``prefix``."""

    def __init__(self, prefix: str) -> None:
        super().__init__()
        self.prefix = prefix

    def filter(self, record: logging.LogRecord) -> bool:
        return not record.getMessage().startswith(self.prefix)


def drop_messages(logger_name: str, prefix: str) -> None:
    """Drop ``logger_name``'s records that start with ``prefix`` (added once per process,
    however many searches the process runs)."""
    logger = logging.getLogger(logger_name)
    if not any(isinstance(f, _DropMessages) and f.prefix == prefix for f in logger.filters):
        logger.addFilter(_DropMessages(prefix))


TOKEN_HELP = ("if the cluster uses token authentication (Ray's default), set RAY_AUTH_MODE=token "
              "and make the head node's token readable here (~/.ray/auth_token, "
              "RAY_AUTH_TOKEN_PATH or RAY_AUTH_TOKEN)")


def token_available() -> bool:
    """Whether this machine holds a Ray authentication token (where Ray looks for one)."""
    if os.environ.get("RAY_AUTH_TOKEN"):
        return True
    path = os.environ.get("RAY_AUTH_TOKEN_PATH") or str(Path.home() / ".ray" / "auth_token")
    return Path(path).expanduser().is_file()


def use_token_auth(address: str | None) -> None:
    """Connect to ``host:port`` the way ``--address auto`` does.

    Ray turns token authentication on for ``auto`` when a token is on the machine, but not
    for an explicit address, which then fails with a bare "cannot connect".
    """
    if address and address != "auto" and not address.startswith("ray://") \
            and "RAY_AUTH_MODE" not in os.environ and token_available():
        os.environ["RAY_AUTH_MODE"] = "token"


# Ray's and Tune's settings for a search, read from the environment (Ray has no other switch
# for them); a value the user set wins.
RAY_SETTINGS = {
    "RAY_DEDUP_LOGS": "0",  # each trial's log lines, not "[repeated 3x]"
    "TUNE_DISABLE_AUTO_CALLBACK_LOGGERS": "1",  # the trials log themselves (TensorBoard, CSV)
    "RAY_AIR_NEW_OUTPUT": "0",  # the live view replaces Tune's console output
    "TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S": "0",  # local folder: no sync
}


@contextlib.contextmanager
def ray_environment() -> Iterator[None]:
    """Within the block, :data:`RAY_SETTINGS` (and ``RAY_AUTH_MODE`` if
    :func:`use_token_auth` sets it) are in this process's environment; after it, the
    environment is as it was, so a search run in a process (a notebook, a benchmark) leaves
    no setting behind."""
    with environment_restored((*RAY_SETTINGS, "RAY_AUTH_MODE")):
        for name, value in RAY_SETTINGS.items():
            os.environ.setdefault(name, value)
        yield


def init_ray(address: str | None) -> None:
    """Start Ray on this machine (``address`` None) or connect to the cluster at ``address``."""
    if address:
        check_address(address)
        use_token_auth(address)  # before Ray is imported: it reads RAY_AUTH_MODE then
    import ray

    # Ray's notice that token authentication is on by default (it stays on), logged under a
    # logger of its private modules; it has no public switch.
    drop_messages("ray._private.authentication.authentication_token_setup",
                  "Token authentication is enabled")
    # Ray's hint to resume with Tuner.restore: a search resumes with textsearch's own line
    # (--resume), which starts a new Tune run from the search folder
    drop_messages("ray.tune.tune", "Experiment has been interrupted")
    # Ray's note on a Ctrl-C (or a SIGTERM, forwarded to it) that it checkpoints before it
    # stops: the search ends with its own line saying how to resume
    drop_messages("ray.tune.tune", "Stop signal received")
    # Ray's result grid, unused here, warns of trials that have not reported yet; the
    # summary lists them as unfinished
    drop_messages("ray.tune.analysis.experiment_analysis", "Failed to fetch metrics")
    if ray.is_initialized():
        return
    try:
        ray.init(address=address, include_dashboard=False, logging_level=logging.WARNING,
                 configure_logging=True, log_to_driver=True)
    except (ConnectionError, RuntimeError, TimeoutError) as err:
        hint = f"; {TOKEN_HELP}" if address and address != "auto" else ""
        raise UserError(f"cannot connect to the Ray cluster at {address}: {err}{hint}") from None


def cluster_resources() -> tuple[float, float]:
    """The CPUs and GPUs the connected cluster holds (call after :func:`init_ray`)."""
    import ray

    res = ray.cluster_resources()
    return float(res.get("CPU", 1)), float(res.get("GPU", 0))
