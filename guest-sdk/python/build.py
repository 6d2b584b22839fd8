"""polymongo-py-build: turns a Python plugin into a polymongo component.

    python /path/to/polymongo/guest-sdk/python/build.py [APP_DIR] -o notes.wasm

Run it with the Python environment that has the pinned toolchain
(``pip install --no-deps -r guest-sdk/python/requirements.txt``: componentize-py and pymongo).

- ``APP_DIR`` (default ``.``) holds the module ``app.py`` (``--module`` to name another) that
  defines ``class Handler(polymongo_guest.Plugin)``.
- The SDK (``guest-sdk/python/src``) and pymongo's ``bson`` package are bundled: ``bson``'s
  ``*.py`` files only, staged next to the output (the C accelerator cannot run inside wasm;
  ``bson`` falls back to its pure-Python implementation).
- componentize-py builds the world ``tenant-plugin`` of the WIT next to this SDK (``--wit`` to
  use another folder): ``polymongo:plugin@0.2.0`` (``wit/v0.2``, change streams) with 0.1.0
  as its dependency. When the app module also defines ``Subscriber`` (a plugin with
  ``[[subscriptions]]``, ``polymongo_guest.subscriber.Consumer``), the world is
  ``tenant-subscriber`` (``--world`` forces one). It imports the app at build time and snapshots the interpreter, so
  module-level code runs once, at build time: keep per-request work in handlers.
"""

from __future__ import annotations

import argparse
import ast
import importlib.util
import os
import shutil
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent


def stage_bson(dest: Path) -> Path:
    """Copies pymongo's pure-Python ``bson`` package to ``dest/bson``; returns ``dest``."""
    spec = importlib.util.find_spec("bson")
    if spec is None or spec.origin is None:
        sys.exit("polymongo-py-build: pymongo's bson package is not installed in this environment "
                 "(pip install --no-deps -r guest-sdk/python/requirements.txt)")
    source = Path(spec.origin).parent
    target = dest / "bson"
    shutil.rmtree(target, ignore_errors=True)
    target.mkdir(parents=True)
    for f in source.iterdir():
        if f.suffix == ".py" or f.name == "py.typed":
            shutil.copy2(f, target / f.name)
    return dest


def wit_folder(wit: Path, staging: Path) -> Path:
    """The WIT folder to build against: ``wit`` (polymongo:plugin@0.1.0) as it is, or, when it
    has the 0.2.0 package in ``v0.2/`` (change streams), ``staging`` rebuilt with 0.2.0 as the
    main package and 0.1.0 as its dependency (componentize-py takes one folder)."""
    v2 = wit / "v0.2"
    if not v2.is_dir():
        return wit
    shutil.rmtree(staging, ignore_errors=True)
    dep = staging / "deps" / "polymongo-plugin-0.1.0"
    dep.mkdir(parents=True)
    for f in v2.glob("*.wit"):
        shutil.copy2(f, staging / f.name)
    for f in wit.glob("*.wit"):
        shutil.copy2(f, dep / f.name)
    return staging


PLUGIN_WORLD = "tenant-plugin"
SUBSCRIBER_WORLD = "tenant-subscriber"


def defines_subscriber(app_dir: Path, module: str) -> bool:
    """Whether the app module (``APP_DIR/MODULE.py`` or ``APP_DIR/MODULE/__init__.py``) defines
    ``Subscriber`` at its top level (a class, an assignment or an import), read without
    importing it: the export of the world ``tenant-subscriber``."""
    path = app_dir / f"{module}.py"
    if not path.is_file():
        path = app_dir / module / "__init__.py"
    try:
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    except (OSError, SyntaxError):
        return False  # componentize-py reports it
    for node in tree.body:
        if isinstance(node, ast.ClassDef) and node.name == "Subscriber":
            return True
        if isinstance(node, (ast.Assign, ast.AnnAssign)):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            if any(isinstance(t, ast.Name) and t.id == "Subscriber" for t in targets):
                return True
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            if any((a.asname or a.name) == "Subscriber" for a in node.names):
                return True
    return False


def componentize_py() -> str:
    """The componentize-py of this environment."""
    local = Path(sys.executable).parent / "componentize-py"
    found = str(local) if local.exists() else shutil.which("componentize-py")
    if not found:
        sys.exit("polymongo-py-build: componentize-py is not installed in this environment "
                 "(pip install --no-deps -r guest-sdk/python/requirements.txt)")
    return found


def main() -> None:
    parser = argparse.ArgumentParser(prog="polymongo-py-build", description=__doc__.split("\n")[0])
    parser.add_argument("app_dir", nargs="?", default=".", help="folder with the app module")
    parser.add_argument("-o", "--out", required=True, help="the component to write (.wasm)")
    parser.add_argument("--module", default="app", help="the app module (default: app)")
    parser.add_argument("--wit", default=str(HERE.parent.parent / "wit"), help="WIT folder")
    parser.add_argument("--world", help="the world (default: tenant-subscriber when the app "
                        "defines Subscriber, else tenant-plugin)")
    args = parser.parse_args()

    app_dir = Path(args.app_dir).resolve()
    world = args.world or (
        SUBSCRIBER_WORLD if defines_subscriber(app_dir, args.module) else PLUGIN_WORLD)

    out = Path(args.out).resolve()
    out.parent.mkdir(parents=True, exist_ok=True)
    site = stage_bson(out.parent / f".{out.stem}.site")
    wit = wit_folder(Path(args.wit), out.parent / f".{out.stem}.wit")
    command = [
        componentize_py(), "-d", str(wit), "-w", world,
        "componentize", args.module, "-o", str(out),
        "-p", str(app_dir),
        "-p", str(HERE / "src"),
        "-p", str(site),
    ]
    env = dict(os.environ, PYTHONDONTWRITEBYTECODE="1")
    result = subprocess.run(command, env=env)
    if result.returncode != 0:
        sys.exit(f"polymongo-py-build: componentize-py failed ({result.returncode})")
    size = out.stat().st_size / 1048576
    print(f"polymongo-py-build: {out} (world {world}, {size:.1f} MiB)")


if __name__ == "__main__":
    main()
