"""A static file server for the web page (``web/dist``, built by ``make web``): files only, on this computer.

It computes nothing: the page runs the generator (and the editor view's inpainter) in the browser. It lists no
folders, answers only GET and HEAD, binds to the loopback address by default,
and sends the cross-origin isolation headers that let onnxruntime-web use
WebAssembly threads.
"""

from __future__ import annotations

import functools
import json
import os
import sys
from http import HTTPStatus
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from generator.onnx_meta import INPAINTER_KIND, KIND, check_fresh, read_metadata
from generator.resources import in_clone, project_path

SITE = project_path("web", "dist")
MODELS = "models.json"  # the page's generators, each with the largest image it takes, and its editor's inpainter
REQUIRED = ("index.html", "src/app.js", "ort/ort.min.mjs", MODELS)
# the Makefile's variable that picks each model's checkpoint: a rebuild hint names it, so that a page built from
# a generator of one's own is not rebuilt from the default
BUILT_FROM = {"model.onnx": "WEB_GENERATOR", "model-large.onnx": "WEB_LARGE_GENERATOR",
              "inpainter.onnx": "WEB_INPAINTER"}


# the kind of checkpoint each of the Makefile's page variables names
BUILD_KINDS = {"WEB_GENERATOR": "generator", "WEB_LARGE_GENERATOR": "generator", "WEB_INPAINTER": "inpainter"}


class SiteError(ValueError):
    """A page folder that is missing, incomplete, or holds a stale model."""


class FileHandler(SimpleHTTPRequestHandler):
    """Serves the files of one folder; no directory listings, no uploads, no logging to the terminal."""

    extensions_map = {**SimpleHTTPRequestHandler.extensions_map, ".js": "text/javascript",
                      ".mjs": "text/javascript", ".wasm": "application/wasm", ".onnx": "application/octet-stream"}

    def list_directory(self, path: str | os.PathLike):
        self.send_error(HTTPStatus.NOT_FOUND, "no directory listings")
        return None

    def end_headers(self) -> None:
        # SharedArrayBuffer (WebAssembly threads) needs a cross-origin-isolated page
        self.send_header("Cross-Origin-Opener-Policy", "same-origin")
        self.send_header("Cross-Origin-Embedder-Policy", "require-corp")
        self.send_header("Cross-Origin-Resource-Policy", "same-origin")
        self.send_header("X-Content-Type-Options", "nosniff")
        self.send_header("Cache-Control", "no-cache")  # a rebuilt model is picked up on reload
        super().end_headers()

    def log_message(self, format: str, *args) -> None:
        pass


def inside_site(name: object) -> bool:
    """Whether ``name`` is a path inside the page's folder, as a URL of the page reaches it."""
    if not isinstance(name, str) or not name or os.path.isabs(name):
        return False
    parts = Path(os.path.normpath(name)).parts
    return bool(parts) and parts[0] not in (".", "..")


def build_hint() -> str:
    """How to get a built page: ``make web`` in a clone; a wheel carries the page only if it was built first."""
    if in_clone():
        return "run 'make web'"
    return "run 'make web' in a PaintGuard clone and install from it again, or pass --root"


def site_models(root: str | os.PathLike = SITE) -> dict[str, str]:
    """The model files the page at ``root`` runs (``models.json``), each with its kind of export: the generators,
    the default one first, then the inpainter of the editor view when the page has one."""
    path = Path(root) / MODELS
    try:
        listed = json.loads(path.read_text())
        files = {model["file"]: KIND for model in listed["models"]}
        if "inpainter" in listed:
            files[listed["inpainter"]["file"]] = INPAINTER_KIND
    except (OSError, ValueError, KeyError, TypeError) as err:
        raise SiteError(f"'{path}' does not list the page's models; {build_hint()} ({err})") from None
    if KIND not in files.values():
        raise SiteError(f"'{path}' lists no model; {build_hint()}")
    for name in files:
        # the page fetches each model from this server, which serves nothing outside the page's folder
        if not inside_site(name):
            raise SiteError(f"'{path}' lists {name!r}, not a file of the page; {build_hint()}")
    return files


def check_build(choices: dict[str, str]) -> None:
    """Refuse, before ``make web`` exports or copies anything, a page variable (``WEB_INPAINTER``: a name) that
    names no checkpoint in checkpoints/ or one of the other kind, which would replace the built page's model."""
    from generator.checkpoint import CheckpointError, article, available, checkpoints_dir, read_metadata

    for variable, name in choices.items():
        kind = BUILD_KINDS[variable]
        path = checkpoints_dir() / f"{name}.safetensors"
        if not path.is_file():
            raise SiteError(f"{variable}: no checkpoints/{name}.safetensors; give the name of a checkpoint in "
                            f"checkpoints/ (copy your runs/NAME/NAME.safetensors there and pass NAME)")
        try:
            found = read_metadata(path).get("kind")
        except CheckpointError as err:
            raise SiteError(f"{variable}: {err}") from None
        if found != kind:
            raise SiteError(f"{variable}: checkpoints/{name}.safetensors is {article(str(found))}, not "
                            f"{article(kind)}; give {article(kind)}'s name: {', '.join(available(kind)) or 'none'}")


def check_site(root: str | os.PathLike = SITE) -> dict[str, dict]:
    """Refuse a page folder that is incomplete or whose models no longer match their checkpoints; returns each
    model's metadata by file name, as ``site_models`` orders them."""
    root = Path(root)
    missing = [name for name in REQUIRED if not (root / name).is_file()]
    models = {} if missing else site_models(root)  # models.json, once it is there, says which models the page needs
    missing += [name for name in models if not (root / name).is_file()]
    if missing:
        raise SiteError(f"the web page in '{root}' is not built (missing {', '.join(missing)}); {build_hint()}")
    metas = {}
    for name, kind in models.items():
        metas[name] = read_metadata(root / name, kind)
        source = Path(str(metas[name].get("source", ""))).stem
        rebuild = f"make web {BUILT_FROM[name]}={source}" if name in BUILT_FROM and source else "make web"
        check_fresh(metas[name], str(root / name), rebuild=rebuild)
    return metas


class SiteServer(ThreadingHTTPServer):
    """Serves the page; a browser that goes away mid-file (a reload while a model downloads) is not an error."""

    def handle_error(self, request, client_address) -> None:
        error = sys.exc_info()[1]
        if isinstance(error, (ConnectionResetError, BrokenPipeError, ConnectionAbortedError)):
            return  # socketserver printed a 20-line traceback on the command's terminal
        print(f"paintguard web: error serving {client_address[0]}: {type(error).__name__}: {error}", file=sys.stderr)


def make_server(root: str | os.PathLike = SITE, port: int = 0, host: str = "127.0.0.1") -> ThreadingHTTPServer:
    """A server for ``root`` on ``host:port`` (0: a free port); call ``serve_forever`` on it."""
    handler = functools.partial(FileHandler, directory=str(Path(root).resolve()))
    server = SiteServer((host, port), handler)
    server.daemon_threads = True
    return server


def address(server: ThreadingHTTPServer) -> str:
    """The page's URL."""
    host, port = server.server_address[:2]
    return f"http://{host}:{port}/"


def main(argv: list[str] | None = None) -> int:
    """``python -m generator.web_server VARIABLE=NAME ...``: ``make web``'s check of its page variables."""
    try:
        check_build(dict(arg.split("=", 1) for arg in (sys.argv[1:] if argv is None else argv)))
    except SiteError as err:
        print(f"make: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
