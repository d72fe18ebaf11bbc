"""`grade`: the command line. Parses arguments, calls `grader.grade`, prints, exits.

    grade submissions/ --assignment hw10
    grade checks
    grade report reports/hw10/results.json --format html
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import traceback
from pathlib import Path
from typing import TextIO

from grader._version import __version__
from grader.errors import ExitCode, GraderError

EPILOG = """examples:
  grade submissions/ --assignment hw10            grade the class, write reports/hw10/
  grade submissions/alice --assignment hw10       grade one student's folder
  grade subs/ --rubric my-course/hw10.yaml --hidden-tests /secure/fmnist --out out/
  grade submissions/ --assignment hw10 --only alice bob -v
  grade checks                                    list check kinds and their parameters
  grade report reports/hw10/results.json --format html   re-render without regrading

exit status: 0 every submission graded (whatever the scores); 1 a submission could not be
graded, or --fail-under was missed; 3 internal error; 4 usage, rubric or data error; 130 Ctrl-C.
"""


def _grade_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="grade", description="Grade ML homework: run the rubric over every submission.",
                                epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("path", type=Path, help="folder of submissions (one sub-folder per student) or one student's folder")
    which = p.add_mutually_exclusive_group(required=True)
    which.add_argument("-a", "--assignment", help="assignment id: uses rubrics/<id>.yaml")
    which.add_argument("--rubric", type=Path, help="a rubric file outside the rubrics/ folder")
    p.add_argument("-o", "--out", type=Path, help="report folder (default: reports/<assignment>/)")
    p.add_argument("-j", "--jobs", type=int, default=1,
                   help="submissions graded at once (default 1); with --executor ray and no --ray-address, the CPUs of the Ray it starts")
    p.add_argument("--executor", choices=("local", "ray"), default="local",
                   help="local: this machine's processes (default); ray: one Ray task per submission (docs/cluster.md)")
    p.add_argument("--ray-address", metavar="auto|HOST:PORT",
                   help="with --executor ray: the running Ray cluster to join (default: start a Ray on this machine)")
    p.add_argument("--device", default="auto", metavar="auto|cpu|gpu|gpu:N",
                   help="where models run: auto (a GPU when one is visible; default), cpu, gpu (every visible GPU) "
                        "or gpu:N (the GPU nvidia-smi numbers N); docs/gpu.md")
    p.add_argument("--gpu-share", type=int, default=1, metavar="N",
                   help="submissions evaluated at once on one GPU (default 1)")
    p.add_argument("--gpu-memory-fraction", type=float, metavar="F",
                   help="share of a GPU's memory one submission may take (default 0.9 divided by --gpu-share)")
    p.add_argument("--batch-size", type=int, default=256, metavar="N",
                   help="images per prediction batch (default 256; halved for a model that runs out of device memory)")
    p.add_argument("--hidden-tests", type=Path, help="folder with the hidden test split (else $GRADER_HIDDEN_TESTS, hidden_tests/, ...)")
    p.add_argument("--public-data", type=Path, help="folder with the public train split (default: found like the hidden set)")
    p.add_argument("--only", nargs="+", metavar="STUDENT", help="grade only these students")
    p.add_argument("--single", action="store_true",
                   help="PATH is one submission (e.g. a student's repository), even if its files are in sub-folders")
    p.add_argument("--format", default="html,csv,json", help="comma-separated sinks (default html,csv,json)")
    p.add_argument("--report-strings", type=Path, metavar="YAML",
                   help="the report pages' words in your language (keys of grader/report/strings/en.yaml)")
    p.add_argument("--ledger", type=Path, metavar="FILE",
                   help="the competition's ledger of submissions (default: <out>/competition-ledger.jsonl); keep it")
    p.add_argument("--timeout", type=float, default=1800.0, help="seconds allowed per model (default 1800)")
    p.add_argument("--sandbox", choices=("auto", "bwrap", "none"), default="auto",
                   help="isolation of student models: bwrap (bubblewrap), none, or auto: bwrap when usable (default)")
    p.add_argument("--disk-limit", type=float, default=None, metavar="GB",
                   help="what one submission's sandbox may write, in its own size-capped space (default: the rubric's "
                        "sandbox.disk_gb, 2)")
    p.add_argument("--memory-limit", type=float, default=8.0, metavar="GB",
                   help="address space one evaluation may use, in GB (default 8)")
    p.add_argument("--allow-unsandboxed-code", action="store_true",
                   help="without a sandbox, still run models whose layers carry code (Lambda, custom classes)")
    p.add_argument("--no-zygote", action="store_true",
                   help="start a fresh sandboxed Python per submission instead of forking a pre-imported one (slower)")
    p.add_argument("--no-cache", action="store_true", help="gather all evidence again instead of reusing it")
    p.add_argument("--no-download", action="store_true", help="never download the data set")
    p.add_argument("--own-test-set", action="store_true",
                   help="the hidden folder holds your own split, not the official files: skip md5 verification")
    p.add_argument("--fail-under", type=float, metavar="POINTS", help="exit 1 when any student scores below POINTS")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    p.add_argument("-v", "--verbose", action="count", default=0, help="more detail in the summary")
    p.add_argument("--traceback", action="store_true", help="show the traceback of an internal error")
    p.add_argument("--version", action="version", version=f"grader {__version__}")
    return p


def _rubric_path(args: argparse.Namespace, root: Path) -> Path:
    if args.rubric:
        return args.rubric
    candidate = root / "rubrics" / f"{args.assignment}.yaml"
    if not candidate.exists():
        known = sorted(p.stem for p in (root / "rubrics").glob("*.yaml"))
        raise GraderError(f"no rubric for assignment {args.assignment!r} ({candidate} does not exist)",
                          hint=f"known assignments: {', '.join(known) or 'none'}; or pass --rubric FILE")
    return candidate


def _progress(stderr: TextIO, quiet: bool):  # type: ignore[no-untyped-def]
    if quiet or not stderr.isatty():
        return None, None
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    progress = Progress(TextColumn("grading"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                        TextColumn("{task.description}"), console=Console(file=stderr), transient=True)
    task = progress.add_task("", total=None)

    def update(event: str, student: str, done: int, total: int) -> None:
        progress.update(task, total=total, completed=done, description=student if event == "start" else "")

    return progress, update


def _summary(outcome, out: TextIO, verbose: int) -> None:  # type: ignore[no-untyped-def]
    from rich.console import Console
    from rich.table import Table

    r = outcome.results
    # Criterion ids are long; the columns are numbered and a legend follows, so that the table
    # fits an 80-100 column terminal (a CI log) without truncating student names.
    table = Table(title=f"{r.assignment}: {r.title}", title_justify="left")
    table.add_column("student", no_wrap=True)
    table.add_column("score", justify="right", no_wrap=True)
    table.add_column("best acc.", justify="right", no_wrap=True)
    for i, _ in enumerate(r.criteria, 1):
        table.add_column(f"#{i}", justify="right", no_wrap=True)
    table.add_column("flags")
    for s in r.students:
        acc = "–" if s.best_accuracy is None else f"{s.best_accuracy:.4f}"
        cells = [f"{c.points:g}" if 0 < c.points < c.max_points else ("✓" if c.points else "✗") for c in s.criteria]
        table.add_row(s.student, f"{s.points:g}/{s.max_points:g}", acc, *cells, "; ".join(s.flags))
    console = Console(file=out, width=max(100, shutil.get_terminal_size((100, 24)).columns))
    console.print(table)
    legend = "  ".join(f"#{i}\u00a0{c.id}\u00a0({c.max_points:g})" for i, c in enumerate(r.criteria, 1))
    console.print(f"{legend}   ✓ full points, ✗ none, a number: partial", markup=False, highlight=False)
    if verbose:
        for s in r.students:
            for c in s.criteria:
                console.print(f"  {s.student} {c.id}: {c.outcome} — {c.message}", markup=False, highlight=False)
    print(f"graded {len(r.students)} submission(s) in {r.run.seconds:.1f} s "
          f"({outcome.gathered} gathered, {outcome.cached} from cache); {r.run.sandbox_note}", file=out)
    for path in _shown(outcome.written):
        print(f"wrote {path}", file=out)


def _shown(paths: list[Path]) -> list[str]:
    """The paths written; a sub-folder of pages (one per student) is said once."""
    if not paths:
        return []
    top = min((p.parent for p in paths), key=lambda p: len(p.parts))
    by_folder: dict[Path, list[Path]] = {}
    for path in paths:
        by_folder.setdefault(path.parent, []).append(path)
    shown: list[str] = []
    for path in paths:
        group = by_folder[path.parent]
        if path.parent == top or len(group) == 1:
            shown.append(str(path))
        elif path == group[0]:
            shown.append(f"{path.parent}{os.sep} ({len(group)} pages)")
    return shown


def _check_device_args(args: argparse.Namespace) -> None:
    """--device, --gpu-share and --gpu-memory-fraction, as usage errors (exit 4) that say what is allowed."""
    from grader.sandbox.devices import parse_device

    try:
        args.device = parse_device(args.device)
    except ValueError as exc:
        raise GraderError(f"--device: {exc}", hint="e.g. --device gpu:0; nvidia-smi -L lists the GPUs") from None
    if args.batch_size < 1:
        raise GraderError(f"--batch-size must be at least 1; got {args.batch_size}")
    if args.gpu_share < 1:
        raise GraderError(f"--gpu-share must be at least 1; got {args.gpu_share}")
    fraction = args.gpu_memory_fraction
    if fraction is not None and not 0 < fraction <= 1:
        raise GraderError(f"--gpu-memory-fraction must be in (0, 1]; got {fraction:g}")
    if fraction is not None and fraction * args.gpu_share > 1:
        raise GraderError(f"--gpu-memory-fraction {fraction:g} for each of --gpu-share {args.gpu_share} submissions "
                          "is more than the whole GPU", hint=f"use at most {1 / args.gpu_share:.2f}, or leave it out")


def _cmd_grade(argv: list[str], stdout: TextIO, stderr: TextIO) -> int:
    from grader.pipeline import grade
    from grader.report import sink_names
    from grader.report.strings import load_strings
    from grader.inputs.rubric import load_rubric
    from grader.settings import Settings, project_defaults

    args = _grade_parser().parse_args(argv)
    defaults = project_defaults(Path.cwd())
    root = Path(defaults.get("project_root", Path.cwd()))  # type: ignore[arg-type]
    rubric = load_rubric(_rubric_path(args, root))
    formats = tuple(f.strip() for f in args.format.split(",") if f.strip())
    unknown = [f for f in formats if f not in sink_names()]
    if unknown:
        raise GraderError(f"--format: unknown format {unknown[0]!r}", hint=f"known: {', '.join(sink_names())}")
    if args.jobs < 1:
        raise GraderError("--jobs must be at least 1")
    _check_device_args(args)
    if args.ray_address is not None and args.executor != "ray":
        raise GraderError("--ray-address is for --executor ray", hint=f"add --executor ray --ray-address {args.ray_address}")
    settings = Settings(
        out=args.out, jobs=args.jobs, device=args.device, executor=args.executor, ray_address=args.ray_address,
        gpu_share=args.gpu_share, gpu_memory_fraction=args.gpu_memory_fraction, batch_size=args.batch_size,
        # [tool.grader]'s data folders are for the IDX data set they hold; an image-folder rubric finds its
        # own under hidden_tests/<dataset>/ unless given on the command line
        hidden_tests=args.hidden_tests or (defaults.get("hidden_tests") if rubric.images is None else None),  # type: ignore[arg-type]
        public_data=args.public_data or (defaults.get("public_data") if rubric.images is None else None),  # type: ignore[arg-type]
        only=tuple(args.only or ()), single=args.single, formats=formats, timeout_per_model=args.timeout, cache=not args.no_cache,
        download=not args.no_download, verify_checksums=not args.own_test_set, project_root=root,
        sandbox=args.sandbox, memory_limit_gb=args.memory_limit, allow_unsandboxed_code=args.allow_unsandboxed_code,
        disk_limit_gb=args.disk_limit,
        zygote=not args.no_zygote, ledger=args.ledger, report_strings=args.report_strings or defaults.get("report_strings"),  # type: ignore[arg-type]
    )
    load_strings(settings.report_strings)  # a typo in a translation stops here, before any grading
    progress, update = _progress(stderr, args.quiet)
    if progress is not None:
        with progress:
            outcome = grade(args.path, rubric, settings, progress=update)
    else:
        outcome = grade(args.path, rubric, settings)
    _summary(outcome, stdout, args.verbose)
    faults = [s for s in outcome.results.students if s.status == "grader_fault"]
    if faults:
        cause = next((e for e in reversed(faults[0].evidence.errors) if e.startswith("grader fault")), "grader fault")
        names = ", ".join(s.student for s in faults[:10]) + (f" and {len(faults) - 10} more" if len(faults) > 10 else "")
        print(f"error: {len(faults)} submission(s) not graded because the grader failed, not the students ({names}): "
              f"{cause.removeprefix('grader fault: ')}; nothing of them was cached: grade again once it is fixed",
              file=stderr)
        return ExitCode.NOT_ALL_GRADED
    not_graded = [s.student for s in outcome.results.students if s.status != "gathered"]
    if not_graded:
        print(f"error: not graded: {', '.join(not_graded)} (see their report pages)", file=stderr)
        return ExitCode.NOT_ALL_GRADED
    if args.fail_under is not None:
        low = [s.student for s in outcome.results.students if s.points < args.fail_under]
        if low:
            print(f"error: below --fail-under {args.fail_under:g}: {', '.join(low)}", file=stderr)
            return ExitCode.NOT_ALL_GRADED
    return ExitCode.OK


def _cmd_checks(argv: list[str], stdout: TextIO) -> int:
    from grader.judging.checks import check_names, get_check

    argparse.ArgumentParser(prog="grade checks", description="List the check kinds a rubric can use.").parse_args(argv)
    for name in check_names():
        spec = get_check(name)
        print(f"{name}: {spec.help}", file=stdout)
        for field, info in spec.params.model_fields.items():
            kind = getattr(info.annotation, "__name__", None) or str(info.annotation).replace("typing.", "")
            default = "required" if info.is_required() else f"default {info.default!r}"
            desc = f" — {info.description}" if info.description else ""
            print(f"    {field}: {kind} ({default}){desc}", file=stdout)
    return ExitCode.OK


def _cmd_bundle(argv: list[str], stdout: TextIO, stderr: TextIO) -> int:
    from grader.atomic import write_atomic, write_fault
    from grader.inputs.bundle import KEY_ENV, make_bundle, new_key

    p = argparse.ArgumentParser(
        prog="grade bundle", formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Encrypt a hidden-test folder into a bundle that only the key opens.",
        epilog=f"The key comes from ${KEY_ENV}; without it a new key is made and printed once: keep it in a\n"
               f"secret (GitHub: an organisation secret named {KEY_ENV}). Then:\n"
               f"  {KEY_ENV}=... grade submissions/ --assignment hw10 --hidden-tests hidden.bundle")
    p.add_argument("folder", type=Path, help="the hidden-test folder, e.g. hidden_tests/fashion-mnist")
    p.add_argument("-o", "--out", type=Path, default=Path("hidden.bundle"), help="bundle file (default hidden.bundle)")
    args = p.parse_args(argv)
    key = os.environ.get(KEY_ENV) or ""
    made = not key
    if made:
        key = new_key()
    data = make_bundle(args.folder, key)
    try:
        write_atomic(args.out, data)  # whole or not at all; no temporary file left on a full disk
    except OSError as exc:
        raise write_fault(exc, args.out.resolve().parent, f"the bundle {args.out.name}") from None
    print(f"wrote {args.out} ({len(data):,} bytes)", file=stdout)
    if made:
        print(f"{KEY_ENV}={key}", file=stdout)
        print(f"keep this key secret; it is not stored anywhere and opens {args.out}", file=stderr)
    return ExitCode.OK


def _cmd_report(argv: list[str], stdout: TextIO) -> int:
    from pydantic import ValidationError

    from grader.report import write_reports
    from grader.records.results import Results

    p = argparse.ArgumentParser(prog="grade report", description="Re-render reports from results.json without regrading.")
    p.add_argument("results", type=Path)
    p.add_argument("--format", default="html")
    p.add_argument("-o", "--out", type=Path, help="default: the folder of results.json")
    p.add_argument("--report-strings", type=Path, metavar="YAML", help="the pages' words in your language")
    args = p.parse_args(argv)
    from grader.report import ReportOptions
    from grader.report.strings import load_strings

    options = ReportOptions(strings=load_strings(args.report_strings))
    try:
        results = Results.model_validate_json(args.results.read_bytes())
    except (OSError, ValidationError, ValueError) as exc:
        raise GraderError(f"{args.results}: not a results.json this grader can read ({str(exc).splitlines()[0]})") from None
    for path in _shown(write_reports(results, args.out or args.results.parent, [f.strip() for f in args.format.split(",")], options)):
        print(f"wrote {path}", file=stdout)
    return ExitCode.OK


def main(argv: list[str] | None = None, stdout: TextIO | None = None, stderr: TextIO | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    stdout = stdout or sys.stdout
    stderr = stderr or sys.stderr
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    show_tb = "--traceback" in argv
    try:
        if argv[:1] == ["checks"]:
            return _cmd_checks(argv[1:], stdout)
        if argv[:1] == ["bundle"]:
            return _cmd_bundle(argv[1:], stdout, stderr)
        if argv[:1] == ["report"]:
            return _cmd_report(argv[1:], stdout)
        return _cmd_grade(argv, stdout, stderr)
    except GraderError as exc:
        for line in exc.message.splitlines():
            print(f"error: {line}", file=stderr)
        if exc.hint:
            print(f"hint: {exc.hint}", file=stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("interrupted: evidence of every finished submission is cached; run the same command again to resume",
              file=stderr)
        return ExitCode.INTERRUPTED
    except Exception as exc:  # noqa: BLE001
        if show_tb:
            traceback.print_exc(file=stderr)
        print(f"error: internal error: {type(exc).__name__}: {exc}", file=stderr)
        print("hint: run again with --traceback and report it", file=stderr)
        return ExitCode.INTERNAL


def entry() -> None:
    sys.exit(main())


if __name__ == "__main__":
    entry()
