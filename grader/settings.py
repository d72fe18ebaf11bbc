"""Settings of a grading run: the CLI's defaults live here, once."""

from __future__ import annotations

import os
import tomllib
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from grader.sandbox.devices import DEFAULT_GPU_MEMORY_FRACTION, parse_device


class Settings(BaseModel):
    """Everything `grader.grade` needs besides the submissions and the rubric."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    out: Path | None = None  # default: reports/<assignment>/
    jobs: int = Field(default=1, ge=1)
    device: str = "auto"  # auto, cpu, gpu or gpu:N (grader.sandbox.devices.parse_device)
    gpu_share: int = Field(default=1, ge=1)  # submissions evaluated at once on one GPU
    gpu_memory_fraction: float | None = Field(default=None, gt=0, le=1)  # of a GPU per submission; None: 0.9 / gpu_share
    hidden_tests: Path | None = None
    public_data: Path | None = None  # where the PUBLIC train split is; default: found like the hidden set
    only: tuple[str, ...] = ()
    single: bool = False  # the path is one submission (a student's repository), whatever its layout
    formats: tuple[str, ...] = ("html", "csv", "json")
    public_sample: int = Field(default=1000, ge=10)
    timeout_per_model: float = Field(default=1800.0, gt=0)
    sandbox: Literal["auto", "bwrap", "none"] = "auto"
    memory_limit_gb: float = Field(default=8.0, gt=0)  # address space of one evaluation process
    # what one submission's sandbox may write, and its processes and threads at once; None: the rubric's
    # `sandbox:` section says (grader.inputs.rubric.SandboxPolicy, whose defaults are 2 GB and 512)
    disk_limit_gb: float | None = Field(default=None, gt=0)
    max_tasks: int | None = Field(default=None, ge=16)
    allow_unsandboxed_code: bool = False
    zygote: bool = True  # sandboxed workers fork from a pre-imported one instead of starting Python each time
    batch_size: int = Field(default=256, ge=1)
    cache: bool = True
    download: bool = True
    verify_checksums: bool = True  # False: a teacher's own test split, not the official files
    project_root: Path = Path(".")
    report_strings: Path | None = None  # a translation of grader/report/strings/en.yaml
    ledger: Path | None = None  # the competition's ledger; default <out>/competition-ledger.jsonl
    executor: Literal["local", "ray"] = "local"  # where submissions are gathered (grader.sandbox.executors)
    ray_address: str | None = None  # "auto" or HOST:PORT of a running Ray cluster; None: start one here with `jobs` CPUs

    @field_validator("device")
    @classmethod
    def _device(cls, value: str) -> str:
        return parse_device(value)

    def gpu_fraction(self) -> float:
        """The share of a GPU's memory that one submission may take."""
        return self.gpu_memory_fraction or DEFAULT_GPU_MEMORY_FRACTION / self.gpu_share


def project_defaults(start: Path) -> dict[str, object]:
    """`[tool.grader]` from the nearest pyproject.toml at or above `start` (paths made absolute).

    This is how a course repository (or this project's development checkout) says where its data
    is without a path in library code: e.g. ``hidden_tests = "../data/fashion-mnist"`` (a folder beside the repository).
    """
    for folder in [start.resolve(), *start.resolve().parents]:
        candidate = folder / "pyproject.toml"
        if candidate.is_file():
            try:
                table = tomllib.loads(candidate.read_text()).get("tool", {}).get("grader", {})
            except (tomllib.TOMLDecodeError, OSError):
                return {}
            out: dict[str, object] = {"project_root": folder}
            if "report_strings" in table:
                out["report_strings"] = (folder / str(table["report_strings"])).resolve()
            for key in ("hidden_tests", "public_data"):
                if key in table and not os.environ.get("GRADER_HIDDEN_TESTS"):
                    path = (folder / str(table[key])).resolve()
                    if path.is_dir():  # a development default that is absent here is skipped
                        out[key] = path
            return out
    return {}
