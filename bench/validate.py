"""Turn the junit XML of a device check's ``cuda`` tests into ``validated.json`` entries.

    python -m bench.validate CUDA-TESTS.xml [MORE.xml ...] --arch sm_90 [--base python/effdl/validated.json]
                             [--out validated-candidate.json] [--summary validation.json]

Each ``cuda`` test is attributed to a kernel family — ``triton`` for the tests of
``test_triton_ops.py`` / ``test_triton_backend.py`` (they call :mod:`effdl.triton`
directly), ``cuda`` (the native kernels of ``effdl._C``) for every other test
file — and to the op whose name its name holds (the longest one:
``test_nm_int8_linear`` is ``nm_int8_linear``, not ``int8_linear``; for a test
without an op in its name, the op in its module's name). An op's kernel is
validated on the architecture when at least one of its tests passed and none
failed or errored — and no test of the family that names no op failed (such a
test, e.g. ``test_bf16_dots_on_gpu``, exercises several ops at once). Skipped
tests count for nothing; with ``--expected`` (the collected ids), a test without a
result — its pytest process was killed or crashed — counts as failed. The candidate is the base file with the architecture
added to those ops; it is written for a human to review and commit, never
applied automatically. Prints the table of passed/failed per op and family.
"""

from __future__ import annotations

import argparse
import json
import sys
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path

from effdl import backends

TRITON_TEST_MODULES = ("test_triton_ops", "test_triton_backend")
FAMILIES = ("cuda", "triton")
UNATTRIBUTED = "(no op)"
_OPS_LONGEST_FIRST = sorted(backends.OPS, key=len, reverse=True)


@dataclass(frozen=True)
class TestResult:
    module: str  # e.g. "test_ops"
    name: str  # e.g. "test_nm_linear[cuda-bf16-0]"
    outcome: str  # "passed", "failed", "error" or "skipped"
    message: str = ""


def parse_junit(path: str | Path) -> list[TestResult]:
    """Every ``<testcase>`` of a pytest junit XML file, with its outcome."""
    try:
        root = ET.parse(path).getroot()
    except (OSError, ET.ParseError) as exc:
        raise ValueError(f"junit file {path}: cannot read it as XML ({exc})") from None
    out = []
    for case in root.iter("testcase"):
        classname = case.get("classname", "")
        module = classname.split(".")[-1] if classname else Path(case.get("file", "")).stem
        if module and module[:1].isupper() and "." in classname:  # a test class: take the module above it
            module = classname.split(".")[-2]
        outcome, message = "passed", ""
        for tag in ("failure", "error", "skipped"):
            child = case.find(tag)
            if child is not None:
                outcome = "failed" if tag == "failure" else tag
                message = (child.get("message") or child.text or "").strip().splitlines()[0:1]
                message = message[0][:200] if message else ""
                break
        out.append(TestResult(module, case.get("name", ""), outcome, message))
    return out


def expected_tests(path: str | Path) -> list[TestResult]:
    """The collected test ids (``pytest --collect-only -q`` lines ``tests/test_ops.py::test_x[cuda-0]``)."""
    out = []
    for line in Path(path).read_text().splitlines():
        if "::" not in line:
            continue
        parts = line.strip().split("::")
        out.append(TestResult(Path(parts[0]).stem, parts[-1], "expected"))
    return out


def with_missing(results: list[TestResult], expected: list[TestResult]) -> list[TestResult]:
    """``results`` plus an ``error`` for every expected test without a result: its pytest process was
    killed (a hang past the time limit) or crashed, which must not leave its op looking clean."""
    seen = {(r.module, r.name) for r in results}
    missing = [TestResult(e.module, e.name, "error", "no result: its pytest process was killed or crashed")
               for e in expected if (e.module, e.name) not in seen]
    return results + missing


def family(result: TestResult) -> str:
    """``"triton"`` or ``"cuda"``: which kernels the test exercises."""
    return "triton" if result.module in TRITON_TEST_MODULES else "cuda"


def op_of(result: TestResult) -> str:
    """The op a test checks (longest op name in the test name, then in the module name), else ``UNATTRIBUTED``."""
    for text in (result.name, result.module):
        for op in _OPS_LONGEST_FIRST:
            if op in text:
                return op
    return UNATTRIBUTED


def summarize(results: list[TestResult]) -> dict[str, dict[str, dict[str, int]]]:
    """``family -> op -> {"passed": n, "failed": n, "skipped": n}`` (errors count as failed)."""
    table: dict[str, dict[str, dict[str, int]]] = {f: {} for f in FAMILIES}
    for r in results:
        counts = table[family(r)].setdefault(op_of(r), {"passed": 0, "failed": 0, "skipped": 0})
        counts["failed" if r.outcome == "error" else r.outcome] += 1
    return table


def validated_ops(summary: dict[str, dict[str, dict[str, int]]]) -> dict[str, list[str]]:
    """``family -> ops`` whose kernels passed every test here (see the module docstring for the rule)."""
    kernel_ops = {"cuda": set(backends.OPS) - set(backends.CPU_ONLY_OPS), "triton": set(backends.TRITON_OPS)}
    out: dict[str, list[str]] = {}
    for fam in FAMILIES:
        rows = summary.get(fam, {})
        if rows.get(UNATTRIBUTED, {}).get("failed", 0):
            out[fam] = []
            continue
        out[fam] = sorted(op for op, c in rows.items()
                          if op in kernel_ops[fam] and c["passed"] > 0 and c["failed"] == 0)
    return out


def candidate(base: dict, ops_by_family: dict[str, list[str]], arch: str) -> dict:
    """``base`` (a ``validated.json`` document) with ``arch`` added to the validated ops (sorted, no duplicates)."""
    if not arch.startswith("sm_"):
        raise ValueError(f"arch must look like 'sm_90', got {arch!r}")
    doc = json.loads(json.dumps(base))  # a deep copy
    for fam in FAMILIES:
        section = doc.setdefault(fam, {})
        for op in ops_by_family.get(fam, []):
            section[op] = sorted(set(section.get(op, [])) | {arch})
    return doc


def format_summary(summary: dict[str, dict[str, dict[str, int]]], ops_by_family: dict[str, list[str]]) -> str:
    from .harness import format_table

    rows = []
    for fam in FAMILIES:
        for op, c in sorted(summary.get(fam, {}).items()):
            ok = op in ops_by_family.get(fam, [])
            rows.append([op, fam, str(c["passed"]), str(c["failed"]), str(c["skipped"]), "yes" if ok else "no"])
    if not rows:
        return "(no cuda tests in the junit file)"
    return format_table(["op", "kernels", "passed", "failed", "skipped", "validated"], rows, right={2, 3, 4})


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.validate", description=__doc__.split("\n\n")[0])
    p.add_argument("junit", nargs="+", help="junit XML file(s) of `pytest -m cuda --junitxml=...` (one per shard)")
    p.add_argument("--arch", required=True, help="the GPU architecture the tests ran on, e.g. sm_90")
    p.add_argument("--base", default=str(Path(backends.__file__).with_name("validated.json")),
                   help="the validated.json to extend (default: effdl's)")
    p.add_argument("--out", default=None, help="write the candidate validated.json here")
    p.add_argument("--summary", default=None, help="write the per-op counts and failures (JSON) here")
    p.add_argument("--expected", default=None,
                   help="the collected test ids (pytest --collect-only -q); one without a result counts as failed")
    args = p.parse_args(argv)
    try:
        results = [r for path in args.junit for r in parse_junit(path)]
        if args.expected:
            results = with_missing(results, expected_tests(args.expected))
        base = json.loads(Path(args.base).read_text())
        summary = summarize(results)
        ops_by_family = validated_ops(summary)
        doc = candidate(base, ops_by_family, args.arch)
    except (OSError, ValueError) as exc:
        print(f"python -m bench.validate: {exc}", file=sys.stderr)
        return 2
    if args.out:
        Path(args.out).write_text(json.dumps(doc, indent=2) + "\n")
    if args.summary:
        failures = [{"module": r.module, "name": r.name, "outcome": r.outcome, "message": r.message}
                    for r in results if r.outcome in ("failed", "error")]
        Path(args.summary).write_text(json.dumps(
            {"arch": args.arch, "tests": len(results), "counts": summary, "validated": ops_by_family,
             "failures": failures}, indent=1) + "\n")
    print(f"cuda tests on {args.arch}: {len(results)} "
          f"({sum(r.outcome == 'passed' for r in results)} passed, "
          f"{sum(r.outcome in ('failed', 'error') for r in results)} failed/errored, "
          f"{sum(r.outcome == 'skipped' for r in results)} skipped)")
    print(format_summary(summary, ops_by_family))
    if args.out:
        print(f"candidate (review, then copy to python/effdl/validated.json to commit): {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
