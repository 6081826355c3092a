"""Where each stage reads and writes, for one profile. Notebooks get every path from here."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class RunPaths:
    profile: str
    runs_dir: Path = Path("runs")
    figures_dir: Path = Path("figures")

    @property
    def root(self) -> Path:
        return self.runs_dir / self.profile

    @property
    def world(self) -> Path:  # toy problems and the pointer to the toy SLM (notebook 00)
        return self.root / "world"

    @property
    def slm_cache(self) -> Path:  # toy SLMs, keyed by config hash, shared by profiles
        return self.runs_dir / ".cache" / "slm"

    @property
    def data(self) -> Path:  # samples and RFT selection (01)
        return self.root / "data"

    @property
    def streams(self) -> Path:  # one JSONL per training stream (01-03)
        return self.root / "streams"

    @property
    def rewards(self) -> Path:  # reward per trace per stream (02-03)
        return self.root / "rewards"

    @property
    def models(self) -> Path:  # fine-tuned models (04)
        return self.root / "models"

    @property
    def eval(self) -> Path:  # evaluation samples, accuracy and perplexity tables (05)
        return self.root / "eval"

    @property
    def figures(self) -> Path:  # tables and figures (06)
        return self.figures_dir / self.profile

    def stream(self, name: str) -> Path:
        return self.streams / f"{name}.jsonl"
