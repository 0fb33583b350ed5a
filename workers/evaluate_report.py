"""``docs/accuracy.md``: the evaluation written as Markdown tables."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from workers.evaluate import MethodSummary

#: The issue's targets on the synthetic set and on the real slices.
TARGETS = {
    "lung m-Dice (synthetic)": (">=", 0.98),
    "infected m-Dice (synthetic)": (">=", 0.85),
    "PoIR Pearson r (synthetic)": (">=", 0.99),
    "PoIR m-APE % (synthetic)": ("<=", 5.0),
    "infected m-Dice (real slices, cross-validated)": (">=", 0.74),
}


def fmt(value: float | None, digits: int = 3) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    return f"{value:.{digits}f}"


@dataclass(frozen=True)
class Report:
    command: str
    weights: Sequence[tuple[str, str, str]]  # name, version, sha256
    synthetic: dict[str, MethodSummary]
    synthetic_cases: int
    classifier_auc: float | None
    classifier_threshold: float
    real: dict[str, MethodSummary] | None
    real_folds: int
    real_steps: int
    best: str

    def markdown(self) -> str:
        out = [
            "# Accuracy",
            "",
            "Written by `dicom-node evaluate`; the structure of Wu et al. 2020, Table 1.",
            "Reproduce it with:",
            "",
            f"    {self.command}",
            "",
            "Metrics (the paper's formulas): Dice = 2|P∩G| / (|P|+|G|), m-Dice its mean over the",
            "cases (infected m-Dice over the cases with infected regions); PoIR = infected / lung",
            "volume × 100 %; Pearson's r and the mean absolute percentage error",
            "m-APE = mean(|PoIR_pred − PoIR_true| / PoIR_true) × 100 % over the cases with",
            "PoIR_true > 0. Seconds are per series on this machine's CPU (2 cores).",
            "",
            "Weights evaluated:",
            "",
            "| model | version | sha256 |",
            "|---|---|---|",
        ]
        out += [f"| {n} | {v} | `{h[:16]}…` |" for n, v, h in self.weights]
        out += [
            "",
            f"## Synthetic chest CT ({self.synthetic_cases} held-out series)",
            "",
            "| method | lung m-Dice | infected m-Dice | PoIR r | PoIR m-APE % | s / series |",
            "|---|---|---|---|---|---|",
        ]
        for name, summary in self.synthetic.items():
            out.append(
                f"| {name} | {fmt(summary.lung_mdice)} | {fmt(summary.infected_mdice)} | "
                f"{fmt(summary.pearson)} | {fmt(summary.mape, 1)} | {fmt(summary.seconds, 1)} |"
            )
        out += [
            "",
            f"Candidate classifier on the held-out series' candidates: AUC "
            f"{fmt(self.classifier_auc)}, operating point {self.classifier_threshold:.2f} "
            "(chosen on validation series at training; the paper's is 0.45, AUC 0.913).",
            "",
        ]
        if self.real is not None:
            out += [
                f"## Real COVID-19 slices ({self.real_folds}-fold cross-validation, grouped)",
                "",
                "The 50 labelled COVID-SemiSeg slices (infected-region labels only, so no lung",
                "Dice and no PoIR). Each fold's 2D infection UNet trained with the shipped",
                f"recipe for {self.real_steps} steps on the synthetic set and the other folds",
                "(operating point chosen on the synthetic validation set, as for the shipped",
                "weights).",
                "",
                "| method | infected m-Dice | slices |",
                "|---|---|---|",
            ]
            for name, summary in self.real.items():
                out.append(f"| {name} | {fmt(summary.infected_mdice)} | {len(summary.rows)} |")
            out.append("")
        out += ["## Targets", "", "| target | wanted | measured | met |", "|---|---|---|---|"]
        for label, measured in self.target_values().items():
            op, wanted = TARGETS[label]
            met = (
                "–"
                if measured is None or math.isnan(measured)
                else (
                    "yes"
                    if (measured >= wanted if op == ">=" else measured <= wanted)
                    else "**no**"
                )
            )
            out.append(f"| {label} | {op} {wanted} | {fmt(measured)} | {met} |")
        out += [
            "",
            f"Measured on `{self.best}` (the default engine) unless stated. Where a target",
            "is not met, [models.md](models.md#where-the-targets-are-not-met) says why.",
            "",
        ]
        out += self._per_case()
        return "\n".join(out) + "\n"

    def target_values(self) -> dict[str, float | None]:
        best = self.synthetic.get(self.best)
        values: dict[str, float | None] = {
            "lung m-Dice (synthetic)": best.lung_mdice if best else None,
            "infected m-Dice (synthetic)": best.infected_mdice if best else None,
            "PoIR Pearson r (synthetic)": best.pearson if best else None,
            "PoIR m-APE % (synthetic)": best.mape if best else None,
        }
        if self.real is not None:
            values["infected m-Dice (real slices, cross-validated)"] = max(
                (s.infected_mdice for s in self.real.values()), default=None
            )
        return values

    def _per_case(self) -> list[str]:
        out = ["## Per case", "", "### Synthetic", ""]
        names = list(self.synthetic)
        out.append(
            "| case | PoIR true | "
            + " | ".join(f"{n}: lung / inf. Dice, PoIR" for n in names)
            + " |"
        )
        out.append("|---|---|" + "---|" * len(names))
        by_case: dict[str, dict[str, str]] = {}
        truth: dict[str, str] = {}
        for name, summary in self.synthetic.items():
            for row in summary.rows:
                truth[row.case] = fmt(row.poir_true, 2)
                by_case.setdefault(row.case, {})[name] = (
                    f"{fmt(row.lung_dice)} / {fmt(row.infected_dice)}, {fmt(row.poir_predicted, 2)}"
                )
        for case, cells in by_case.items():
            out.append(
                f"| {case} | {truth[case]} | " + " | ".join(cells.get(n, "–") for n in names) + " |"
            )
        if self.real is not None:
            names = list(self.real)
            out += ["", "### Real slices (infected Dice)", ""]
            out.append("| slice | " + " | ".join(names) + " |")
            out.append("|---|" + "---|" * len(names))
            rows: dict[str, dict[str, str]] = {}
            for name, summary in self.real.items():
                for row in summary.rows:
                    rows.setdefault(row.case, {})[name] = fmt(row.infected_dice)
            for case, cells in rows.items():
                out.append(f"| {case} | " + " | ".join(cells.get(n, "–") for n in names) + " |")
        return out
