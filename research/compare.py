"""``python -m research.compare RUN [RUN ...]``: runs of one recipe side by side, with the mean and
spread over their seeds.

For each run folder (``metrics.json`` + ``args.json`` written by ``python -m fer_train``) it prints the
selected epoch (the best Valid accuracy; for a final fit, the last epoch), that epoch's Valid
accuracy and UAR, the last epoch's accuracy, the epochs done and the wall-clock minutes; then
the mean, the spread (max - min) and the sample standard deviation of each number over the runs.
Runs still in progress are marked, since their numbers are not final.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from fer_core.errors import InvalidArgumentError


@dataclass
class RunSummary:
    """One run's headline numbers.

    Attributes:
        run: the run folder.
        seed: its ``--seed``.
        epoch: the selected epoch (1-based): best Valid accuracy, or the last one for a final fit.
        valid_acc, valid_uar: Valid (or held-out fold) accuracy and UAR at that epoch, 0..1.
        last_acc: Valid accuracy at the latest epoch, 0..1.
        epochs_done, epochs: epochs finished and scheduled.
        minutes: wall-clock training minutes so far (the latest ``elapsed_s`` / 60).
    """

    run: str
    seed: int | None
    epoch: int
    valid_acc: float
    valid_uar: float
    last_acc: float
    epochs_done: int
    epochs: int
    minutes: float

    @property
    def finished(self) -> bool:
        """Whether every scheduled epoch has run."""
        return self.epochs_done >= self.epochs


def summarise_run(run: str | Path) -> RunSummary:
    """Read one run folder's ``metrics.json`` and ``args.json``.

    Raises:
        InvalidArgumentError: the folder has no ``metrics.json`` (no epoch finished yet) or it is
            empty or malformed.
    """
    run = Path(run)
    try:
        history = json.loads((run / "metrics.json").read_text())
        args = json.loads((run / "args.json").read_text()) if (run / "args.json").is_file() else {}
        final_fit = float(args.get("final_fit") or (args.get("extra") or {}).get("final_fit") or 0.0) > 0
        pick = history[-1] if final_fit else max(history, key=lambda row: row["valid_acc"])
        return RunSummary(run=str(run), seed=args.get("seed"), epoch=int(pick["epoch"]),
                          valid_acc=float(pick["valid_acc"]), valid_uar=float(pick.get("valid_uar", float("nan"))),
                          last_acc=float(history[-1]["valid_acc"]), epochs_done=len(history),
                          epochs=int(args.get("epochs", len(history))),
                          minutes=float(history[-1]["elapsed_s"]) / 60)
    except FileNotFoundError as exc:
        raise InvalidArgumentError(f"{run}: no metrics.json (not a training run, or no epoch finished yet)") from exc
    except (ValueError, KeyError, IndexError, TypeError) as exc:
        raise InvalidArgumentError(f"{run}/metrics.json is empty or malformed: {exc}") from exc


def spread(values: list[float]) -> dict[str, float]:
    """Mean, spread (max - min) and sample standard deviation (``ddof=1``; NaN for one value)."""
    a = np.asarray(values, dtype=np.float64)
    return {"mean": float(a.mean()), "spread": float(a.max() - a.min()),
            "std": float(a.std(ddof=1)) if len(a) > 1 else float("nan")}


NUMBERS = ("valid_acc", "valid_uar", "last_acc", "minutes")


def spread_over(rows: list[RunSummary]) -> dict[str, dict[str, float]]:
    """:func:`spread` of each of :data:`NUMBERS` over already read run summaries.

    Returns:
        ``{number: {"mean", "spread", "std"}}``.
    """
    return {k: spread([getattr(r, k) for r in rows]) for k in NUMBERS}


def compare(runs: list[str | Path]) -> dict[str, dict[str, float]]:
    """Summaries of ``runs`` and :func:`spread` of each of :data:`NUMBERS` over them.

    Returns:
        ``{number: {"mean", "spread", "std"}}``.

    Raises:
        InvalidArgumentError: no runs, or a run cannot be read (:func:`summarise_run`).
    """
    if not runs:
        raise InvalidArgumentError("compare: no runs given")
    return spread_over([summarise_run(r) for r in runs])


def main(argv: list[str] | None = None) -> int:
    """Print the table; exit status 1 with a message when a run cannot be read."""
    p = argparse.ArgumentParser(prog="python -m research.compare", description=__doc__.split("\n")[0])
    p.add_argument("runs", nargs="+", help="run folders of one recipe (e.g. one per --seed)")
    args = p.parse_args(argv)
    try:
        rows = [summarise_run(r) for r in args.runs]  # each run read once, for the table and the stats
    except InvalidArgumentError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    stats = spread_over(rows)
    print(f"{'run':<32} {'seed':>4} {'epoch':>7} {'acc':>7} {'UAR':>7} {'last acc':>8} {'minutes':>8}")
    for r in rows:
        state = "" if r.finished else f"  (in progress: {r.epochs_done}/{r.epochs} epochs)"
        print(f"{r.run:<32} {str(r.seed):>4} {r.epoch:>3}/{r.epochs:<3} {r.valid_acc:7.4f} {r.valid_uar:7.4f} "
              f"{r.last_acc:8.4f} {r.minutes:8.1f}{state}")
    for name in ("mean", "spread", "std"):
        s = {k: stats[k][name] for k in NUMBERS}
        print(f"{name:<32} {'':>4} {'':>7} {s['valid_acc']:7.4f} {s['valid_uar']:7.4f} {s['last_acc']:8.4f} "
              f"{s['minutes']:8.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
