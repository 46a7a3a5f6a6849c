"""Book-keeping shared by the solvers: history, callback, display, time budget, best iterate."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import numpy as np

from sdf.problem import Point, Problem
from sdf.result import History, IterationInfo, StopReason

__all__ = ["Run", "table_printer"]


def table_printer(every: int, print_fn: Callable[[str], Any] = print) -> Callable[[IterationInfo], None]:
    """A callback printing an iteration table row every ``every`` iterations."""
    header = (f"{'iter':>5} {'objective':>13} {'rel. change':>11} {'step':>10} "
              f"{'radius':>10} {'CG':>4} {'time [s]':>9}")

    def show(info: IterationInfo) -> None:
        if info.iteration == 0:
            print_fn(header)
        if info.iteration % every == 0:
            print_fn(f"{info.iteration:5d} {info.objective:13.6e} {info.relchange:11.3e} "
                     f"{info.step:10.3e} {info.radius:10.3e} {info.cg_iterations:4d} "
                     f"{info.time:9.3f}")

    return show


class Run:
    """One solver run: records iterations, calls callbacks, keeps the best finite iterate."""

    def __init__(self, problem: Problem, max_time: float, display: int,
                 callback: Callable[[IterationInfo], Any] | None) -> None:
        self.problem = problem
        self.max_time = max_time
        self.callbacks: list[Callable[[IterationInfo], Any]] = []
        if display:
            self.callbacks.append(table_printer(int(display)))
        if callback is not None:
            self.callbacks.append(callback)
        self.history = History()
        self.start = time.perf_counter()
        self.best: Point | None = None
        self.iterations = 0

    def elapsed(self) -> float:
        return time.perf_counter() - self.start

    def relerr(self, point: Point) -> dict[str, float]:
        out = {}
        for name, term, fval in zip(self.problem.term_names, self.problem.terms, point.fvals):
            if term.is_data_term:
                norm = term.data_norm
                out[name] = float(np.sqrt(2.0 * fval) / norm) if norm > 0 else float(np.sqrt(2.0 * fval))
        return out

    def record(self, point: Point, iteration: int, relchange: float, step: float,
               radius: float, cg_iterations: int) -> bool:
        """Record an accepted iterate; True when a callback asks to stop."""
        self.iterations = iteration
        if self.best is None or point.f <= self.best.f:
            self.best = point
        info = IterationInfo(iteration=iteration, objective=point.f, relchange=relchange,
                             step=step, radius=radius, cg_iterations=cg_iterations,
                             time=self.elapsed(), fvals=point.fvals.copy(), z=point.z)
        self.history.record(info, self.relerr(point))
        stop = False
        for cb in self.callbacks:
            stop = bool(cb(info)) or stop
        return stop

    def out_of_time(self) -> bool:
        return self.elapsed() >= self.max_time

    def final(self, stop: StopReason) -> tuple[Point, StopReason]:
        assert self.best is not None
        return self.best, stop
