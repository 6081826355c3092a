"""The paper's published numbers and the claims a run can be held against (the tour's "Toy vs
paper" tables). Numbers: Qwen2.5-Math-1.5B, Avg@16 (%) as the mean of five benchmarks, reward of
Qwen2.5-Math-RM-72B, perplexity under the SLM before training (docs/paper.md). A run's numbers
come from its Table 1 (`table1.csv` of notebook 06): another model, other benchmarks and another
k, so digits do not compare; what can agree or not is each claim's direction."""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

NAN = float("nan")

# Stream -> (reward, perplexity, SFT Avg@16, DFT Avg@16); nan where the paper gives none.
# Style-Aligned is the paper's Qwen-72B rewrite (its GPT-5.2 rewrite is not a stream here).
PAPER: dict[str, tuple[float, float, float, float]] = {
    "SLM-RFT": (1.47, 1.52, 22.74, 37.06),
    "Ground truth": (1.78, NAN, 16.72, 31.28),
    "Oracle-Refined": (1.70, 1.85, 19.60, 34.06),
    "Oracle-Synthesized": (1.88, 2.69, 23.26, 30.02),
    "Style-Aligned": (1.37, 1.46, NAN, 39.12),
}
COLUMNS = ("Reward", "PPL", "SFT", "DFT")


def paper_table() -> pd.DataFrame:
    return pd.DataFrame([{"Stream": s, **dict(zip(COLUMNS, v, strict=True))} for s, v in PAPER.items()])


def run_table(table1: pd.DataFrame) -> pd.DataFrame:
    """A run's Table 1 (table1.csv) in the paper's columns: the `SFT Avg@k`/`DFT Avg@k` means,
    whatever k and whatever interval columns sit beside them."""

    def col(prefix: str) -> str:
        found = [c for c in table1.columns if c.startswith(f"{prefix} Avg@")]
        if len(found) != 1:
            raise ValueError(f"table1: expected one '{prefix} Avg@k' column, found {found or 'none'}")
        return found[0]

    t = table1.rename(columns={col("SFT"): "SFT", col("DFT"): "DFT"})
    return t[["Stream", *COLUMNS]].reset_index(drop=True)


def side_by_side(table1: pd.DataFrame) -> pd.DataFrame:
    """Paper and run per stream, each measure's two columns next to each other."""
    paper = paper_table().set_index("Stream")
    run = run_table(table1).set_index("Stream")
    rows = []
    for s in run.index:
        row: dict[str, object] = {"Stream": s}
        for c in COLUMNS:
            row[f"{c} (paper)"] = paper.loc[s, c] if s in paper.index else NAN
            row[f"{c} (run)"] = run.loc[s, c]
        rows.append(row)
    return pd.DataFrame(rows)


@dataclass(frozen=True)
class Claim:
    """`a` ranks above `b` in column `col` (b None: above every other stream)."""

    text: str
    col: str
    a: str
    b: str | None = None

    def margin(self, t: pd.DataFrame) -> float | None:
        """a's value minus b's (or minus the best other stream's); None where either is missing."""
        v = t[self.col].dropna()
        others = v.drop(index=self.a, errors="ignore")
        if self.b is not None:
            others = others[others.index == self.b]
        if self.a not in v.index or others.empty:
            return None
        return float(v[self.a] - others.max())


# The paper's claims, each a direction that a run either shares or not (the SFT exception too).
CLAIMS = (
    Claim("Oracle-Refined gets a higher reward than SLM-RFT", "Reward", "Oracle-Refined", "SLM-RFT"),
    Claim("Oracle-Synthesized gets the highest reward", "Reward", "Oracle-Synthesized"),
    Claim("DFT: SLM-RFT beats Oracle-Refined (the paradox)", "DFT", "SLM-RFT", "Oracle-Refined"),
    Claim("DFT: SLM-RFT beats Oracle-Synthesized", "DFT", "SLM-RFT", "Oracle-Synthesized"),
    Claim("DFT: SLM-RFT beats Ground truth", "DFT", "SLM-RFT", "Ground truth"),
    Claim("SFT: SLM-RFT beats Oracle-Refined", "SFT", "SLM-RFT", "Oracle-Refined"),
    Claim(
        "SFT: Oracle-Synthesized beats SLM-RFT (the paper's exception)",
        "SFT",
        "Oracle-Synthesized",
        "SLM-RFT",
    ),
    Claim("Oracle-Refined has a higher perplexity than SLM-RFT", "PPL", "Oracle-Refined", "SLM-RFT"),
    Claim("Oracle-Synthesized has the highest perplexity", "PPL", "Oracle-Synthesized"),
    Claim(
        "Oracle-Refined has a higher perplexity than Style-Aligned", "PPL", "Oracle-Refined", "Style-Aligned"
    ),
    Claim("DFT: Style-Aligned beats SLM-RFT (the fix)", "DFT", "Style-Aligned", "SLM-RFT"),
    Claim("DFT: Style-Aligned beats Oracle-Refined", "DFT", "Style-Aligned", "Oracle-Refined"),
)


def _word(margin: float | None) -> str:
    if margin is None:
        return "not measured"
    return "yes" if margin > 0 else ("tied" if margin == 0 else "no")


def claims(table1: pd.DataFrame) -> pd.DataFrame:
    """Each claim: does it hold in the paper and in the run, the run's margin (a minus b, in the
    claim's unit: reward, perplexity or points of Avg@k; with one seed a point or two of Avg@k is
    within sampling noise), and whether the two agree ('n/a' where either lacks the numbers, e.g.
    a loss the profile does not train)."""
    paper = paper_table().set_index("Stream")
    run = run_table(table1).set_index("Stream")
    run = run[run.index.isin(list(PAPER))]  # the paper's five streams: "highest" among those
    rows = []
    for c in CLAIMS:
        p, r = c.margin(paper), c.margin(run)
        agree = "n/a" if p is None or r is None else ("agrees" if (p > 0) == (r > 0) else "DIFFERS")
        rows.append(
            {"claim": c.text, "paper": _word(p), "this run": _word(r), "run margin": r, "verdict": agree}
        )
    return pd.DataFrame(rows)
