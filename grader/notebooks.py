"""Static facts from submitted notebooks. Nothing is executed here (that is a later issue).

Code cells are parsed with `ast` (shell escapes and magics are blanked first), so a comment or a
string that mentions ``VGG16(weights='imagenet')`` does not count; a real call does.
"""

from __future__ import annotations

import ast
import json
from pathlib import Path

from grader.evidence import AppCall, NotebookEvidence

APPLICATION_NAMES = frozenset({
    "VGG16", "VGG19", "ResNet50", "ResNet50V2", "ResNet101", "ResNet152", "MobileNet", "MobileNetV2",
    "MobileNetV3Small", "MobileNetV3Large", "InceptionV3", "InceptionResNetV2", "Xception", "DenseNet121",
    "DenseNet169", "DenseNet201", "NASNetMobile", "NASNetLarge", "ConvNeXtTiny",
    *(f"EfficientNetB{i}" for i in range(8)), *(f"EfficientNetV2B{i}" for i in range(4)),
})
MAX_NOTEBOOK_BYTES = 200 * 1024**2


def _clean(source: str) -> str:
    lines = []
    for line in source.splitlines():
        stripped = line.lstrip()
        lines.append(line[: len(line) - len(stripped)] + "pass" if stripped.startswith(("!", "%")) else line)
    return "\n".join(lines)


def _literal(node: ast.expr) -> str | None:
    if isinstance(node, ast.Constant):
        return None if node.value is None else str(node.value)
    return "<expr>"


def _call_name(func: ast.expr) -> str | None:
    if isinstance(func, ast.Name):
        return func.id
    if isinstance(func, ast.Attribute):
        return func.attr
    return None


def read_notebook(path: Path, label: str) -> NotebookEvidence:
    """Cells, imports and application-model calls of one notebook; errors become evidence."""
    try:
        if path.stat().st_size > MAX_NOTEBOOK_BYTES:
            return NotebookEvidence(path=label, error=f"the notebook is larger than {MAX_NOTEBOOK_BYTES // 1024**2} MB")
        data = json.loads(path.read_text(encoding="utf-8"))
        cells = data["cells"] if isinstance(data, dict) else None
        if not isinstance(cells, list):
            raise ValueError("no 'cells' list")
    except (OSError, UnicodeDecodeError, ValueError, KeyError, TypeError) as exc:
        return NotebookEvidence(path=label, error=f"not a readable notebook (invalid JSON after a hand edit?): {exc}")
    imports: set[str] = set()
    calls: list[AppCall] = []
    code_cells = 0
    for index, cell in enumerate(cells):
        if not isinstance(cell, dict) or cell.get("cell_type") != "code":
            continue
        code_cells += 1
        source = cell.get("source", "")
        source = "".join(source) if isinstance(source, list) else str(source)
        try:
            tree = ast.parse(_clean(source))
        except SyntaxError:
            continue
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                imports.update(alias.name for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.module:
                imports.add(node.module)
            elif isinstance(node, ast.Call):
                name = _call_name(node.func)
                if name in APPLICATION_NAMES:
                    weights: str | None = "imagenet"  # the Keras default when `weights=` is not given
                    for kw in node.keywords:
                        if kw.arg == "weights":
                            weights = _literal(kw.value)
                    calls.append(AppCall(name=name, weights=weights, line=node.lineno, cell=index))
    return NotebookEvidence(path=label, cells=len(cells), code_cells=code_cells, imports=tuple(sorted(imports)),
                            app_calls=tuple(calls))
