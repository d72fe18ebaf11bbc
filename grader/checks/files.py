"""Checks about the files a submission holds and the Kaggle submissions it reports."""

from __future__ import annotations

import fnmatch

from pydantic import Field

from grader.checks._registry import Criterion, Params, register_check
from grader.evidence import Evidence
from grader.results import CriterionResult


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


class KaggleParams(Params):
    max: int = Field(default=2, ge=0, description="most submissions allowed")
    required: bool = Field(default=True, description="fail when the student hands in no submission list")


@register_check("max_kaggle_submissions", params=KaggleParams, needs={"kaggle"})
def max_kaggle_submissions(evidence: Evidence, criterion: Criterion) -> CriterionResult:
    """No more than N Kaggle submissions, counted from the CSV that `kaggle competitions submissions --csv` prints."""
    p: KaggleParams = criterion.params  # type: ignore[assignment]
    k = evidence.kaggle
    how = "Export it with `kaggle competitions submissions -c COMPETITION --csv > kaggle_submissions.csv` and add the file."
    if k is None:
        if p.required:
            return criterion.failed(f"No Kaggle submission list found. {how}")
        return criterion.passed("No Kaggle submission list handed in; none is required.")
    if k.error:
        return criterion.errored(f"Could not read {k.path}: {k.error}. {how}")
    n = len(k.submissions)
    detail = "; ".join(f"{s.date} {s.file_name} public={s.public_score}" for s in k.submissions)
    if n <= p.max:
        return criterion.passed(f"{n} Kaggle submission(s) in {k.path} (at most {p.max} allowed).", detail)
    return criterion.failed(f"{n} Kaggle submissions in {k.path}; at most {p.max} are allowed.", detail)
