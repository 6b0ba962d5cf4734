"""``python -m textsearch.dashboard runs/<name>``: optuna-dashboard on a search's study.

Serves the search's ``study.journal`` on 127.0.0.1 only, while the search runs (the page
follows it live) and afterwards.  Examples::

    python -m textsearch.dashboard runs/cnn_emnist-20261127-101500
    python -m textsearch.dashboard runs/cnn_emnist-20261127-101500 --port 8081
"""

from __future__ import annotations

import argparse
import errno
import sys
from pathlib import Path
from socketserver import ThreadingMixIn
from wsgiref import simple_server

from textsearch import cli
from textsearch.errors import UserError, cli_entry
from textsearch.record import STUDY_FILE

HOST = "127.0.0.1"  # never beyond this machine: the dashboard can edit the study


def build_parser() -> cli.Parser:
    p = cli.Parser(prog="textsearch.dashboard", description=__doc__.split("\n\n")[0],
                   formatter_class=argparse.RawDescriptionHelpFormatter,
                   epilog=__doc__.split("\n\n", 1)[1])
    p.add_argument("search_dir", type=cli.folder_path, help="a search's folder (runs/<name>)")
    p.add_argument("--port", type=cli.port, default=8080, help="port on 127.0.0.1 (default 8080)")
    return p


def make_server(search_dir: Path, port: int):
    """A WSGI server for the dashboard of ``search_dir``'s study, bound to 127.0.0.1."""
    journal = search_dir / STUDY_FILE
    if not journal.is_file():
        raise UserError(f"{search_dir} holds no {STUDY_FILE}: not a search folder, or its "
                        "search has not started yet")
    from optuna_dashboard import wsgi

    from textsearch.study import journal_storage, repair_journal

    repair_journal(journal)
    app = wsgi(journal_storage(journal))

    class Server(ThreadingMixIn, simple_server.WSGIServer):
        daemon_threads = True

    class QuietHandler(simple_server.WSGIRequestHandler):
        def log_message(self, *args) -> None:  # no line per request
            pass

    try:
        return simple_server.make_server(HOST, port, app, server_class=Server, handler_class=QuietHandler)
    except OSError as err:
        if err.errno == errno.EADDRINUSE:
            raise UserError(f"port {port} on {HOST} is already in use: choose another with "
                            "--port") from None
        raise UserError(f"cannot serve on {HOST}:{port}: {err.strerror or err}") from None


@cli_entry
def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    server = make_server(Path(args.search_dir), args.port)
    print(f"dashboard of {args.search_dir}: http://{HOST}:{args.port}/dashboard/ "
          "(Ctrl-C to stop)", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
