"""``paintguard web``: serve the in-browser protection page on this computer and print its address.

    make web              # once, in a clone: npm packages and the exported models into web/dist
    paintguard web        # then open the printed address; --port N to choose the port

An installed copy serves the page it was installed with (built before installing).

The page runs the generator in the browser (onnxruntime-web): images never leave
it, and this server only hands out the page's files. It refuses to start when the
page is not built or one of its models is stale (exported from an older checkpoint).
"""

from __future__ import annotations

import argparse

from generator.cli_parser import ArgumentParser
from generator.onnx_meta import INPAINTER_KIND, KIND
from generator.signals import Stopped
from generator.web_server import SITE, address, check_site, make_server

DEFAULT_PORT = 8765


def build_parser() -> argparse.ArgumentParser:
    parser = ArgumentParser(prog="paintguard web", description=__doc__,
                            formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--port", type=int, default=DEFAULT_PORT,
                        help=f"port (default {DEFAULT_PORT}; 0: any free one)")
    parser.add_argument("--host", default="127.0.0.1",
                        help="address to listen on (default: this computer only)")
    parser.add_argument("--root", default=str(SITE), help="the built page (default: the clone's web/dist, or the "
                        "installed copy of it)")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if not 0 <= args.port <= 65535:
        raise ValueError(f"--port must be 0-65535, got {args.port}")
    metas = check_site(args.root).values()
    sources = ", then ".join(meta["source"] for meta in metas if meta["kind"] == KIND)
    editors = [meta["source"] for meta in metas if meta["kind"] == INPAINTER_KIND]
    sources += f"; the editor view's inpainter from {editors[0]}" if editors else ""
    try:
        server = make_server(args.root, args.port, args.host)
    except OSError as err:
        raise OSError(f"cannot listen on {args.host}:{args.port}: {err.strerror or err}") from None
    print(f"paintguard web: serving {args.root} (models from {sources}) at {address(server)} "
          "-- open it in a browser; Ctrl+C stops", flush=True)
    try:
        server.serve_forever()
    except (KeyboardInterrupt, Stopped):  # Ctrl+C is how a server is stopped: not an error
        print("paintguard web: stopped", flush=True)
    finally:
        server.server_close()
    return 0
