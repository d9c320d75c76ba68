"""online_models is the pure domain: it never imports I/O or async frameworks."""

import ast
from pathlib import Path

FORBIDDEN = {"faust", "redis", "asyncio", "kafka", "aiokafka", "streams", "producers", "mode"}
ROOT = Path(__file__).resolve().parents[2] / "online_models"


def test_online_models_imports_no_io_or_async_framework():
    offenders = []
    for path in ROOT.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            names = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
            offenders += [f"{path.name}: {n}" for n in names if n.split(".")[0] in FORBIDDEN]
    assert offenders == []
    assert list(ROOT.rglob("*.py"))  # the check looked at something
