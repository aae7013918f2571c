"""The study report: Markdown tables, verdict lines and plots, built only from the tables in ``results/``
(per_case.csv, lesions.csv, curves.csv, plan_summary.json), so it can be rebuilt at any time
(``backsplit study --report-only``)."""

from __future__ import annotations

import csv
import json
import math
import os
from pathlib import Path
from typing import Optional, Sequence

from backsplit.study.stats import METRICS, case_detection, compare, pooled_detection, verdict_line

REFERENCE = "binary"


def _read(path: Path) -> list[dict]:
    if not path.is_file() or path.stat().st_size == 0:
        return []
    with path.open(newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def _f(value: float, digits: int = 3, sign: bool = False) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "-" if value is None or math.isnan(value) else ("inf" if value > 0 else "-inf")
    return f"{value:+.{digits}f}" if sign else f"{value:.{digits}f}"


def _num(value) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        return math.nan


def _p(value: float) -> str:
    if not math.isfinite(value):
        return "-"
    return "<0.001" if value < 0.001 else f"{value:.3f}"


def shown_path(path: str, study_dir: Optional[Path]) -> str:
    """A path as the report shows it: relative to the study folder when inside it, else the folder's own name (the
    report is published: no path of the machine it ran on)."""
    if not path:
        return ""
    if study_dir is not None:
        relative = os.path.relpath(Path(path).resolve(), Path(study_dir).resolve())
        if not relative.startswith(".."):
            return Path(relative).as_posix()
    return Path(path).name


def build_report(per_case: Sequence[dict], lesions: Sequence[dict], curves: Sequence[dict], meta: dict,
                 note: str = "", plots: Sequence[str] = (), study_dir: Optional[Path] = None) -> str:
    """The Markdown text (pure). Paths are shown relative to ``study_dir`` (``shown_path``)."""
    settings = meta.get("settings", {})
    arms = [a["name"] for a in meta.get("arms", [])] or sorted({r["arm"] for r in per_case})
    targets = list(dict.fromkeys(r["target"] for r in per_case))
    lines = ["# BackSplit study report", ""]
    if meta.get("source"):
        lines += [f"Dataset: `{shown_path(meta['source'], study_dir)}` (binary baseline dataset "
                  f"`{shown_path(meta.get('twin', ''), study_dir)}`)", ""]
    if settings:
        seeds = ", ".join(str(s) for s in settings.get("seeds", []))
        lines += [f"Arms: {', '.join(arms)}. {settings.get('folds')}-fold cross-validation, seeds "
                  f"{seeds}; configuration {settings.get('configuration')}, "
                  f"{settings.get('epochs')} epochs x {settings.get('iterations_per_epoch')} iterations, batch size "
                  f"{settings.get('batch_size') or 'as planned'}, sampling {settings.get('sampling')} (unless the arm "
                  f"sets it), test-time mirroring {'on' if settings.get('mirroring') else 'off'}, NSD tolerance "
                  f"{settings.get('nsd_tolerance_mm')} mm, lesions matched by "
                  f"{settings.get('lesion_match', 'overlap')}. Every arm uses the same folds, plans, budget and "
                  "seeds.", ""]
    if note:
        for prefix in {str(Path(study_dir)), str(Path(study_dir).resolve())} if study_dir is not None else ():
            note = note.replace(prefix + os.sep, "")       # failure messages name files inside the study folder
        lines += ["**Incomplete study.** " + note, ""]
    if not per_case:
        return "\n".join(lines + ["No finished unit yet: nothing to report."]) + "\n"
    cases = sorted({r["case_id"] for r in per_case})
    lines += [f"Cases evaluated: {len(cases)} (each predicted by the model of the fold that held it out; "
              "per-case values are means over seeds).", ""]
    for target in targets:
        comparisons = {arm: [compare(per_case, arm, REFERENCE, target, m) for m in METRICS]
                       for arm in arms if arm != REFERENCE}
        lines += [f"## Target `{target}`", "", "### Verdict", ""]
        lines += [f"- {verdict_line(c)}" for c in comparisons.values()] or ["- only the binary arm: nothing to compare"]
        for arm in arms:
            predicted = [r.get("predicted_ml") for r in per_case if r["arm"] == arm and r["target"] == target]
            if predicted and all(_num(v) == 0 for v in predicted):
                lines.append(f"- warning: arm `{arm}` predicted no `{target}` voxel in any case; fewer false-positive "
                             "lesions or a Dice of 1 on cases without a lesion are then no detection gain")
        lines += ["", "A difference is claimed only where the paired bootstrap 95 % CI of the mean difference excludes "
                  "0; Wilcoxon p-values are not corrected for the number of comparisons.", "",
                  "### Per arm vs binary (paired by case)", "",
                  "| arm | metric | n | arm | binary | difference | 95 % CI | Wilcoxon p | verdict |",
                  "|---|---|---|---|---|---|---|---|---|"]
        for arm, items in comparisons.items():
            for c in items:
                extra = f" ({c.left_out} left out: NaN/inf)" if c.left_out else ""
                extra += f" ({c.only_one_arm} in one arm only)" if c.only_one_arm else ""
                lines.append(f"| {arm} | {METRICS[c.metric][0]} | {c.n}{extra} | {_f(c.mean_arm)} | "
                             f"{_f(c.mean_reference)} | {_f(c.difference, sign=True)} | "
                             f"{_f(c.ci_low, sign=True)} to {_f(c.ci_high, sign=True)} | {_p(c.p_value)} | "
                             f"{c.verdict} |")
        lines += ["", "### Lesion-wise detection (pooled over cases and seeds)", "",
                  "| arm | cases | reference lesions | detected | recall | FP lesions | FP lesions per case | F1 |",
                  "|---|---|---|---|---|---|---|---|"]
        for arm in arms:
            d = pooled_detection(per_case, arm, target)
            lines.append(f"| {arm} | {d['cases']} | {d['reference_lesions']} | {d['detected']} | {_f(d['recall'])} | "
                         f"{d['false_positive']} | {_f(d['fp_per_case'], 2)} | {_f(d['f1'])} |")
        sensitivity = settings.get("sensitivity", 0.95)
        lines += ["", f"### Case-level decision: lesion present (score: predicted lesion volume above the probability "
                  f"threshold; minimum volume calibrated for sensitivity {sensitivity:g} on the other folds only)", "",
                  "| arm | cases (with / without lesion) | AUROC | sensitivity | specificity | TP/FN/TN/FP | "
                  "min volume per fold (ml) | note |", "|---|---|---|---|---|---|---|---|"]
        for arm in arms:
            d = case_detection(per_case, arm, target, sensitivity)
            volumes = ", ".join(f"{k}: {v:.3g}" for k, v in d["min_volume_ml"].items()) or "-"
            lines.append(f"| {arm} | {d['cases']} ({d['positive']} / {d['negative']}) | {_f(d['auroc'])} | "
                         f"{_f(d['sensitivity'])} | {_f(d['specificity'])} | "
                         f"{d['true_positive']}/{d['false_negative']}/"
                         f"{d['true_negative']}/{d['false_positive']} | {volumes} | {d['note']} |")
        lines += ["", "AUROC differences are not tested (too few cases without a lesion for a stable paired test "
                  "in small studies); read them as descriptive.", ""]
    if plots:
        lines += ["## Plots", ""] + [f"![{Path(p).stem}]({Path(p).name})" for p in plots] + [""]
    lines += ["Per-case numbers: `results/per_case.csv`; per-lesion: `results/lesions.csv`; learning curves: "
              "`results/curves.csv`.", ""]
    return "\n".join(lines)


def write_report(results_dir: Path, out_dir: Path, note: str = "") -> Path:
    """report.md and the PNG plots in ``out_dir`` from the tables in ``results_dir``."""
    results_dir, out_dir = Path(results_dir), Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    per_case = _read(results_dir / "per_case.csv")
    lesions = _read(results_dir / "lesions.csv")
    curves = _read(results_dir / "curves.csv")
    meta_path = results_dir / "plan_summary.json"
    meta = json.loads(meta_path.read_text(encoding="utf-8")) if meta_path.is_file() else {}
    plots: list[str] = []
    if per_case:
        from backsplit.study.plots import detection_curves, learning_curves, paired_differences

        arms = [a["name"] for a in meta.get("arms", [])] or sorted({r["arm"] for r in per_case})
        target = per_case[0]["target"]
        plots.append(str(paired_differences(per_case, arms, REFERENCE, target, out_dir / "paired_differences.png")))
        if curves:
            plots.append(str(learning_curves(curves, arms, out_dir / "learning_curves.png",
                                             meta.get("settings", {}).get("iterations_per_epoch"))))
        plots.append(str(detection_curves(per_case, lesions, arms, target, out_dir / "detection_curves.png")))
    path = out_dir / "report.md"
    path.write_text(build_report(per_case, lesions, curves, meta, note, plots, study_dir=results_dir.parent),
                    encoding="utf-8")
    return path
