"""grader: grade machine-learning homework (saved Keras models, notebooks) against a rubric.

Evidence is gathered once per submission (`gather`), judged by pure checks (`judge`), and written
by sinks (`grader.report`).
"""

from grader._version import __version__
from grader.evidence import Evidence
from grader.judge import judge
from grader.results import CriterionResult, Results
from grader.rubric import Rubric, load_rubric

__all__ = ["CriterionResult", "Evidence", "Results", "Rubric", "__version__", "grade", "judge", "load_rubric"]


def grade(*args, **kwargs):  # type: ignore[no-untyped-def]
    """Grade a folder of submissions; see grader.pipeline.grade."""
    from grader.pipeline import grade as _grade

    return _grade(*args, **kwargs)
