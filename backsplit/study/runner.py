"""Run a study: plan it, run the units that are not done (wave by wave, through an executor), collect the per-case
tables and write the report. Interrupted studies continue: finished steps are recognised by their content hash."""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

from backsplit.errors import BackSplitError
from backsplit.study.arms import ArmContext, parse_arms
from backsplit.study.executors import Echo, Executor, UnitResult
from backsplit.study.hashing import FileHasher
from backsplit.study.markers import step_done
from backsplit.study.plan import EVALUATE, PREDICT, PREPARE, TRAIN, Plan, StudySettings, Unit, build_plan
from backsplit.study.report import write_report
from backsplit.study.scan import scan_study_inputs

PER_CASE_EXTRA = ["arm", "fold", "seed", "lesion_score_ml", "max_lesion_probability", "lesion_volume_ml"]


def plan_study(dataset_dir: Path, study_dir: Path, arms: Sequence[str], settings: StudySettings) -> Plan:
    """Scan the dataset and its twin (file hashes cached in the study folder) and build the plan."""
    study_dir = Path(study_dir).resolve()
    hasher = FileHasher(study_dir / ".file-hashes.json")
    source, twin = scan_study_inputs(Path(dataset_dir), hasher)
    hasher.save()
    parsed = parse_arms(arms, ArmContext(source.targets, source.supports))
    return build_plan(study_dir, source, twin, parsed, settings)


def plan_lines(plan: Plan) -> list[str]:
    """One line per unit, wave by wave: ``wave W  <unit id> step=hash ...`` (what ``--plan-only`` prints)."""
    return [f"wave {wave}  {unit.id:40s} " + " ".join(f"{k}={v}" for k, v in unit.hashes.items())
            for wave, units in enumerate(plan.waves(), start=1) for unit in units]


def unit_done(plan: Plan, unit: Unit) -> bool:
    folder = Path(plan.study_dir) / "units" / unit.id
    steps = [PREPARE] if unit.kind == "prepare" else [TRAIN, PREDICT, EVALUATE]
    return all(step_done(folder, step, unit.hashes[step]) for step in steps)


@dataclass
class StudyOutcome:
    done: list[str] = field(default_factory=list)
    reused: list[str] = field(default_factory=list)
    failed: dict[str, UnitResult] = field(default_factory=dict)
    skipped: dict[str, str] = field(default_factory=dict)      # unit -> the failed unit it needed


def run_plan(plan: Plan, executor: Executor, echo: Echo = print) -> StudyOutcome:
    study_dir = Path(plan.study_dir)
    study_dir.mkdir(parents=True, exist_ok=True)
    plan.write(study_dir / "plan.json")
    outcome = StudyOutcome()
    waves = plan.waves()
    for index, wave in enumerate(waves, start=1):
        todo = []
        for unit in wave:
            blocked = next((n for n in unit.needs if n in outcome.failed or n in outcome.skipped), None)
            if blocked:
                outcome.skipped[unit.id] = blocked
            elif unit_done(plan, unit):
                outcome.reused.append(unit.id)
            else:
                todo.append(unit)
        echo(f"wave {index}/{len(waves)}: {len(todo)} unit(s) to run, "
             f"{sum(1 for u in wave if u.id in outcome.reused)} reused (verified by content hash)")
        if not todo:
            continue
        results = executor.run(study_dir, [u.id for u in todo], echo)
        for unit in todo:
            result = results.get(unit.id) or UnitResult(unit.id, False, None, "the executor returned no result")
            if result.ok and unit_done(plan, unit):
                outcome.done.append(unit.id)
            else:
                if result.ok:
                    result = UnitResult(unit.id, False, result.returncode,
                                        "the unit said it finished but its outputs do not match the plan's hashes",
                                        result.log_tail, result.state)
                outcome.failed[unit.id] = result
                echo(f"unit {unit.id} failed: {result.message}\n" + _indent(result.log_tail))
    return outcome


def _indent(text: str) -> str:
    return "\n".join("    | " + line for line in text.splitlines())


def _read_csv(path: Path) -> list[dict]:
    with Path(path).open(newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def _write_csv(path: Path, rows: list[dict]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    fields: list[str] = []
    for row in rows:
        fields += [k for k in row if k not in fields]
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=fields)
        writer.writeheader()
        writer.writerows(rows)
    return path


def collect(plan: Plan) -> dict[str, Path]:
    """Concatenate the finished units' tables into ``results/``: per_case.csv (metrics + case score), lesions.csv
    (per-lesion table), curves.csv (learning curves), each row with arm, fold and seed."""
    study_dir = Path(plan.study_dir)
    per_case, lesions, curves = [], [], []
    for unit in plan.units:
        if unit.kind != "run" or not unit_done(plan, unit):
            continue
        folder = study_dir / "units" / unit.id
        tag = {"arm": unit.spec["arm"], "fold": unit.spec["fold"], "seed": unit.spec["seed"]}
        summaries = {r["case_id"]: r for r in _read_csv(folder / "pred" / "summary.csv")}
        for row in _read_csv(folder / "eval" / "cases.csv"):
            summary = summaries.get(row["case_id"], {})
            per_case.append({**tag, **row, "lesion_score_ml": summary.get("lesion_score_ml", ""),
                             "max_lesion_probability": summary.get("max_lesion_probability", ""),
                             "lesion_volume_ml": summary.get("lesion_volume_ml", "")})
        lesions += [{**tag, **row} for row in _read_csv(folder / "eval" / "lesions.csv")]
        curves += [{**tag, **row} for row in _read_csv(folder / "eval" / "curve.csv")]
    out = study_dir / "results"
    paths = {"per_case": _write_csv(out / "per_case.csv", per_case),
             "lesions": _write_csv(out / "lesions.csv", lesions), "curves": _write_csv(out / "curves.csv", curves)}
    (out / "plan_summary.json").write_text(json.dumps({"settings": plan.settings.to_json(), "arms": plan.arms,
                                                      "splits": plan.splits, "source": plan.source,
                                                      "twin": plan.twin}, indent=1), encoding="utf-8")
    return paths


def run_study(plan: Plan, executor: Executor, echo: Echo = print, report: bool = True) -> StudyOutcome:
    """Run what is not done, collect the tables, write the report (also when some units failed: it says so)."""
    outcome = run_plan(plan, executor, echo)
    echo(f"units: {len(outcome.done)} run, {len(outcome.reused)} reused, {len(outcome.failed)} failed, "
         f"{len(outcome.skipped)} skipped (a unit they need failed)")
    paths = collect(plan)
    if report:
        report_path = write_report(paths["per_case"].parent, Path(plan.study_dir) / "report", outcome_note(outcome))
        echo(f"report: {report_path}")
    return outcome


def report_finished(plan: Plan) -> Path:
    """Rebuild the report from the units finished so far (``--report-only``): writes plan.json, the collected tables
    and ``report/``, with a note naming the run units that have not finished; returns the report's path."""
    plan.write(Path(plan.study_dir) / "plan.json")
    paths = collect(plan)
    missing = [u.id for u in plan.units if u.kind == "run" and not unit_done(plan, u)]
    note = (f"{len(missing)} of {sum(u.kind == 'run' for u in plan.units)} run unit(s) have not finished "
            f"({', '.join(missing)}); the tables cover the finished units only (see the n columns).") if missing else ""
    return write_report(paths["per_case"].parent, Path(plan.study_dir) / "report", note)


def outcome_note(outcome: StudyOutcome) -> str:
    if not outcome.failed and not outcome.skipped:
        return ""
    lines = [f"{len(outcome.failed)} unit(s) failed and {len(outcome.skipped)} were skipped; the tables below cover "
             "the finished units only (see the n columns):"]
    lines += [f"- `{u}`: {r.message}" for u, r in sorted(outcome.failed.items())]
    lines += [f"- `{u}`: skipped, needs `{n}`" for u, n in sorted(outcome.skipped.items())]
    return "\n".join(lines)


def require_success(outcome: StudyOutcome) -> None:
    if outcome.failed:
        raise BackSplitError(f"{len(outcome.failed)} unit(s) failed: {', '.join(sorted(outcome.failed))}; their log "
                             "tails are printed above (full logs in <study>/units/<unit>/log.txt); run the same "
                             "command again to retry them (finished units are reused)")
