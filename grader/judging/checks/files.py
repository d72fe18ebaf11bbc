"""Checks about the files a submission holds."""

from __future__ import annotations

import fnmatch

from pydantic import Field

from grader.judging.checks._registry import Criterion, Params, register_check
from grader.records.evidence import Evidence
from grader.records.results import CriterionResult


class FilesParams(Params):
    patterns: tuple[str, ...] = Field(min_length=1, description="globs; each must match at least one file")


@register_check("files_present", params=FilesParams, needs={"files"})
def files_present(evidence: Evidence, criterion: Criterion) -> CriterionResult:
    """Each glob pattern matches at least one file of the submission (e.g. '*.ipynb')."""
    p: FilesParams = criterion.params  # type: ignore[assignment]
    paths = [f.path for f in evidence.files]
    missing = [pat for pat in p.patterns if not any(fnmatch.fnmatch(path.lower(), pat.lower()) or fnmatch.fnmatch(path.rsplit("/", 1)[-1].lower(), pat.lower()) for path in paths)]
    detail = f"{len(paths)} file(s): {', '.join(paths[:20])}{' …' if len(paths) > 20 else ''}"
    if not missing:
        return criterion.passed(f"Found every required file ({', '.join(p.patterns)}).", detail)
    return criterion.partial(
        1 - len(missing) / len(p.patterns),
        f"Missing: no file matches {', '.join(repr(m) for m in missing)}. Add it to your submission folder.",
        detail,
    )
