"""Build step of deploy/Dockerfile: make sure the installed router finds its classifier.

The wheel ships the classifier as router/_classifiers/<name>/. If a wheel was built
without it, copy it from the source tree (argv[1]) into the installed package, then
load it the way the router does, so a broken image fails at build time.
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import router
from router.scoring.model_dir import DEFAULT_MODEL, REQUIRED_FILES, default_model_dir


def main() -> int:
    source = Path(sys.argv[1]) / DEFAULT_MODEL if len(sys.argv) > 1 else None
    packaged = Path(router.__file__).resolve().parent / "_classifiers" / DEFAULT_MODEL
    if not (packaged / "model.onnx").is_file():
        if source is None or not (source / "model.onnx").is_file():
            print(f"classifier {DEFAULT_MODEL!r} is neither in the wheel nor in the context")
            return 1
        print(f"wheel lacks {packaged}; copying {source}")
        packaged.mkdir(parents=True)
        for name in REQUIRED_FILES:
            shutil.copy2(source / name, packaged / name)
    found = default_model_dir()
    missing = [name for name in REQUIRED_FILES if not (found / name).is_file()]
    if missing:
        print(f"classifier at {found} lacks {', '.join(missing)}")
        return 1
    print(f"classifier: {found}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
