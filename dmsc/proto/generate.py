"""Regenerate the Python modules from ``dmsc.proto``.

The generated ``dmsc_pb2.py`` / ``dmsc_pb2_grpc.py`` are committed: installing the package then
needs no compiler, and readers see the code they run. ``grpcio-tools`` is pinned in the ``test``
extra so that regeneration is reproducible; ``tests/unit/test_proto.py`` fails when the committed
modules no longer match the ``.proto``.

    python -m dmsc.proto.generate            # rewrite the modules in place
    python -m dmsc.proto.generate --check    # exit 1 if they are out of date
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

PROTO_DIR = Path(__file__).resolve().parent
REPO_ROOT = PROTO_DIR.parent.parent
PROTO_FILE = PROTO_DIR / "dmsc.proto"
GENERATED = ("dmsc_pb2.py", "dmsc_pb2_grpc.py")


def generate_into(out_root: Path) -> list[Path]:
    """Run protoc with the proto path at the repository root, so imports read ``dmsc.proto``."""
    from grpc_tools import protoc  # test extra: not needed at run time

    args = [
        "grpc_tools.protoc",
        f"-I{REPO_ROOT}",
        f"--python_out={out_root}",
        f"--grpc_python_out={out_root}",
        str(PROTO_FILE.relative_to(REPO_ROOT)),
    ]
    if protoc.main(args) != 0:
        raise RuntimeError(f"protoc failed: {' '.join(args)}")
    return [out_root / "dmsc" / "proto" / name for name in GENERATED]


def stale_modules() -> list[str]:
    """Names of committed modules that differ from a fresh generation."""
    with tempfile.TemporaryDirectory() as tmp:
        fresh = generate_into(Path(tmp))
        return [p.name for p in fresh if p.read_bytes() != (PROTO_DIR / p.name).read_bytes()]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="only report stale modules")
    args = parser.parse_args(argv)
    if args.check:
        stale = stale_modules()
        for name in stale:
            print(f"stale: dmsc/proto/{name} (run python -m dmsc.proto.generate)")
        return 1 if stale else 0
    generate_into(REPO_ROOT)
    return 0


if __name__ == "__main__":
    sys.exit(main())
