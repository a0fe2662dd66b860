"""results/summary.json: the numbers behind every table and answer, machine-readable (tests pin the prose to it)."""
from __future__ import annotations

import platform
from typing import Any

import torch
import torchvision

from . import models
from .config import Profile, worker_count
from .stats import (Group, accuracy, best_epoch, blocks_per_epoch, distinct_predictions, finals,
                    first_epochs_reaching, gradient_stats, improvement_rate, seconds_per_epoch, stuck)
from .training import History, round_floats, first_reaching, pick_device

CHANCE = 0.15  # 10 balanced classes: guessing gives 0.10


def cpu_name() -> str:
    """The CPU model (Linux: /proc/cpuinfo, with whether it has AVX-512), else what platform reports."""
    try:
        info = open("/proc/cpuinfo").read()
        name = next(line.split(":", 1)[1].strip() for line in info.splitlines() if line.startswith("model name"))
        return f"{name} ({'AVX-512' if 'avx512f' in info else 'AVX2, no AVX-512' if 'avx2' in info else 'no AVX2'})"
    except (OSError, StopIteration):
        return platform.processor() or platform.machine()


def environment() -> dict[str, Any]:
    """Library versions and the machine the runs use."""
    device = pick_device()
    return {"torch": torch.__version__, "torchvision": torchvision.__version__, "device": str(device),
            "cpu": cpu_name(), "cores": worker_count(),
            "threads_per_run": 1 if device.type == "cpu" else None,
            "runs_side_by_side": worker_count() if device.type == "cpu" else 1}


def environment_line(env: dict[str, Any], profile: Profile) -> str:
    """One line: profile, data sizes, seeds, device and parallelism."""
    sizes = profile.data_sizes
    where = (f"CPU, {env['runs_side_by_side']} runs side by side, 1 thread each" if env["device"] == "cpu"
             else f"{env['device']}, runs one after another")
    return (f"profile {profile.name}: {sizes['train']:,} training / {sizes['validation']:,} validation / "
            f"{sizes['test']:,} test images, seeds {', '.join(map(str, profile.seeds))} | {where} | "
            f"torch {env['torch']}, torchvision {env['torchvision']}")


def _accuracy_fields(group: Group, series: str = "test_accuracy") -> dict[str, Any]:
    mean, std = accuracy(group, series) or (None, None)
    return {"test_accuracy_mean": mean, "test_accuracy_std": std, "seeds": [r.recipe.seed for r in group],
            "per_seed": finals(group, series)}


def _epoch_means(run: History, key: str) -> list[float]:
    """Per-epoch means of a block series of the gradient trace."""
    blocks, per_epoch = run.gradients["blocks"][key], blocks_per_epoch(run)
    return [sum(part) / len(part) for e in range(run.epochs)
            if (part := blocks[round(e * per_epoch):round((e + 1) * per_epoch)])]


def build(profile: Profile, env: dict[str, Any], every_run: dict[str, History], after_10: dict[float, Group],
          chase: dict[float, History], every_rate: dict[float, Group], structure_lr: float,
          structures: dict[str, Group], candidates: dict[str, Group], chosen: str,
          ablation: dict[tuple[str, str], Group]) -> dict[str, Any]:
    """The summary written to results/summary.json."""
    target = profile.target_accuracy
    runs = list(every_run.values())
    q1_6_run = after_10[structure_lr][0]
    return round_floats({  # 6 significant digits; a missing number (NaN) is written as null
        "profile": profile.name,
        "environment": env,
        "data_sizes": profile.data_sizes,
        "runs": len(runs),
        "seconds_total": sum(r.seconds_total for r in runs),
        "seconds_sequential": sum(r.seconds_total for r in runs),
        "seconds_wall": (max(r.finished for r in runs) - min(r.started for r in runs)) / 1000,
        "q1_2": [{"lr": lr, "epochs": group[0].recipe.epochs, **_accuracy_fields(group),
                  "test_accuracy": accuracy(group)[0] if accuracy(group) else None,
                  "validation_accuracy_mean": (accuracy(group, "validation_accuracy") or (None,))[0],
                  "diverged": any(r.diverged for r in group),
                  "collapsed_to_chance": any((r.final_test_accuracy or 0) <= CHANCE for r in group),
                  "learned": [not stuck(r, target) for r in group],
                  "best_test_accuracy_any_epoch": [best_epoch(r)[0] if r.test_accuracy else None for r in group],
                  "train_loss_first": [r.train_loss[0] if r.train_loss else None for r in group],
                  "train_loss_last": [r.train_loss[-1] if r.train_loss else None for r in group]}
                 for lr, group in after_10.items()],
        "q1_3": [{"lr": lr, "max_epochs": run.recipe.epochs, "epochs_run": run.epochs, "stop_reason": run.stop_reason,
                  "epoch_test_90": first_reaching(run.test_accuracy, target),
                  "epoch_train_90": first_reaching(run.train_accuracy, target),
                  "test_accuracy_at_epoch": (run.test_accuracy[e - 1] if (e := first_reaching(run.test_accuracy, target)) else None),
                  "train_accuracy_at_epoch": (run.train_accuracy[e - 1] if (e := first_reaching(run.train_accuracy, target)) else None),
                  "best_test_accuracy": max(run.test_accuracy, default=None),
                  "best_test_epoch": best_epoch(run)[1] if run.test_accuracy else None,
                  "best_train_accuracy": max(run.train_accuracy, default=None),
                  "final_train_accuracy": run.train_accuracy[-1] if run.train_accuracy else None,
                  "final_test_accuracy": run.final_test_accuracy,
                  "train_trend_per_epoch": improvement_rate(run, "train_accuracy") if run.train_accuracy else None,
                  "validation_trend_per_epoch": improvement_rate(run, "validation_accuracy") if run.test_accuracy else None,
                  "test_loss_min_epoch": (run.test_loss.index(min(run.test_loss)) + 1) if run.test_loss else None,
                  "test_loss": run.test_loss, "train_loss": run.train_loss, "test_accuracy": run.test_accuracy,
                  "train_accuracy": run.train_accuracy}
                 for lr, run in chase.items()],
        "q1_4_sweep": [{"lr": lr, "test_accuracy": accuracy(group)[0] if accuracy(group) else None,
                        **_accuracy_fields(group), "learned": [not stuck(r, target) for r in group]}
                       for lr, group in every_rate.items()],
        "q1_5": [{"structure": name, "hidden_sizes": list(models.STRUCTURES[name]), "parameters": group[0].parameters,
                  "lr": structure_lr, **_accuracy_fields(group), "seconds_per_epoch": seconds_per_epoch(group),
                  "train_accuracy_mean": accuracy(group, "train_accuracy")[0],
                  "train_loss_mean": sum(r.train_loss[-1] for r in group) / len(group)}
                 for name, group in structures.items()],
        "q1_6": {"lr": structure_lr, "steps": len(q1_6_run.gradients["steps"]["signed_mean"]),
                 "gradient_mean": q1_6_run.gradients["steps"]["signed_mean"],
                 "gradient_abs_mean": q1_6_run.gradients["steps"]["abs_mean"],
                 "per_lr": {f"{lr:g}": gradient_stats(group) for lr, group in after_10.items()},
                 "largest_lr": [{"seed": r.recipe.seed, "test_accuracy": r.final_test_accuracy,
                                 "classes_predicted": distinct_predictions(r), "dead_units": r.dead_units}
                                for r in after_10[max(after_10)]]},
        "q1_6_long": [{"lr": lr, "block_steps": group[0].gradients["block"],
                       "signed_mean": [_epoch_means(r, "signed_mean") for r in group],
                       "abs_mean": [_epoch_means(r, "abs_mean") for r in group],
                       "error_norm": [_epoch_means(r, "error_norm") for r in group]}
                      for lr, group in after_10.items() if all(r.gradients for r in group)],
        "q1_7": [{"model": "cnn", "network": chosen, "scheme": "cnn", "parameters": ablation[(chosen, "cnn")][0].parameters,
                  "epochs": ablation[(chosen, "cnn")][0].epochs, **_accuracy_fields(ablation[(chosen, "cnn")]),
                  "seconds_per_epoch": seconds_per_epoch(ablation[(chosen, "cnn")]),
                  "first_epoch_test_90": first_epochs_reaching(ablation[(chosen, "cnn")], target)},
                 *({"model": f"mlp_{name}", "scheme": "demo", "parameters": group[0].parameters,
                    "epochs": group[0].epochs, **_accuracy_fields(group), "seconds_per_epoch": seconds_per_epoch(group),
                    "first_epoch_test_90": first_epochs_reaching(group, target)}
                   for name, group in structures.items())],
        "q1_7_selection": [{"candidate": name, "channels": list(models.CNN_CANDIDATES[name]),
                            "parameters": group[0].parameters,
                            "validation_accuracy": accuracy(group, "validation_accuracy")[0],
                            "seconds_per_epoch": seconds_per_epoch(group)}
                           for name, group in candidates.items()],
        "q1_7_selected": chosen,
        "q1_7_ablation": [{"model": "cnn" if models.is_cnn(network) else f"mlp_{network}", "network": network,
                           "scheme": scheme, "parameters": group[0].parameters, **_accuracy_fields(group),
                           "seconds_per_epoch": seconds_per_epoch(group),
                           "first_epoch_test_90": first_epochs_reaching(group, target),
                           "test_loss_first_epoch": sum(r.test_loss[0] for r in group) / len(group)}
                          for (network, scheme), group in ablation.items()],
    })


def timing_line(summary: dict[str, Any]) -> str:
    """How long the training took when it ran: wall time against the sum of the runs' own times."""
    wall, sequential = summary["seconds_wall"], summary["seconds_sequential"]
    return (f"{summary['runs']} runs; training took {wall / 60:.1f} min wall for {sequential / 60:.1f} min of "
            f"runs ({sequential / wall:.2f} runs at a time on average), measured when they ran")
