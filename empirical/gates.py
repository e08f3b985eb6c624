"""The gates of an empirical comparison: the conditions under which it can test the claims
at all (docs/glossary.md), checked on ``compare.json``'s per-seed rows before any claim is
judged (``empirical.claims.summarise``)."""

from __future__ import annotations

# The thresholds, fixed here before any run. teacher_margin: the wide teacher beats the thin net
# trained from scratch on validation by at least this (accuracy: points as a fraction; text:
# masked-LM nats); scratch_converged: every seed's scratch run met its convergence rule
# (train.convergence) and, where scratch_2x ran, doubling scratch's steps changed validation by
# less than "doubling" (0.3 accuracy point; for text 0.01 masked-LM nats, a choice of this
# package); block_error: every block's thin-mode relative error after stage 2 of ours is at most
# this above the least error its interface width allows (its floor,
# imitation_loss.error_floor: 0 where thin and wide widths agree, so the gate is then the plain
# "error <= 0.05"), on every seed. A
# thin block whose output is c channels wide, mapped linearly into a teacher's C > c, cannot go
# below the teacher's variance outside its top c principal components; a gate on the plain error
# would then fail whatever stage 2 does, and test nothing about it. A gate that fails leaves every
# claim unjudged (held = null, the gate named); a gate that cannot be checked (a method missing,
# no validation during training) is reported as not checked and judges nothing. With several seeds
# the gates are also checked on the first seed alone (the pilot): a pilot gate that fails leaves
# the claims unjudged too, as it would have stopped the comparison (compare --pilot).
GATES = {"teacher_margin": {"resnet": 0.01, "bert": 0.1},
         "doubling": {"resnet": 0.003, "bert": 0.01}, "block_error": 0.05}


def gate_facts(result: dict) -> dict:
    """What the gates read from one run: its validation score in the teacher-margin gate's
    units (higher is better), the convergence verdict of its last training stage, and the
    largest thin-mode block error after stage 2."""
    m = result["metrics"]
    score = (-m["mlm"]["val"]["mlm_loss"] if result["task"] == "bert"
             else m["val"]["accuracy"])
    verdicts = [v.get("converged") for n, v in (result.get("convergence") or {}).items()
                if n != "downstream"]
    errors = (result.get("imitation_block_errors") or {}).get("thin") or {}
    stage2 = next((r for r in result.get("stages", {}).values() if "block_errors" in r), {})
    floors = stage2.get("block_error_floors") or {}
    excess = [e - floors.get(b, 0.0) for b, e in errors.items()]
    return {"val_score": score, "converged": verdicts[-1] if verdicts else None,
            "max_block_error": max(errors.values()) if errors else None,
            "max_block_error_floor": max(floors.values()) if floors else None,
            "max_block_error_excess": max(excess) if excess else None}


def check_gates(task: str, per_method: dict) -> list[dict]:
    """The gates of :data:`GATES` on the per-seed rows of :func:`summarise`: each with its
    threshold, the measured value (and per seed), and ``passed`` (True, False, or None when
    it cannot be checked, with the reason)."""
    def facts(method):
        rows = per_method.get(method, {}).get("per_seed", [])
        return {r["seed"]: r.get("gate_facts") or {} for r in rows}

    rows = []
    teacher, scratch, ours = facts("teacher"), facts("scratch"), facts("ours")
    threshold = GATES["teacher_margin"][task]
    unit = "masked-LM nats" if task == "bert" else "validation accuracy"
    row = {"gate": "teacher_margin", "statement": f"teacher beats scratch by >= {threshold:g} "
           f"({unit}, mean over seeds)", "threshold": threshold}
    common = sorted(set(teacher) & set(scratch))
    if not common:
        rows.append(row | {"measured": None, "passed": None,
                           "note": "needs methods teacher and scratch"})
    else:
        margins = [teacher[s]["val_score"] - scratch[s]["val_score"] for s in common]
        measured = sum(margins) / len(margins)
        rows.append(row | {"measured": measured, "per_seed": margins,
                           "passed": bool(measured >= threshold)})
    threshold = GATES["doubling"][task]
    row = {"gate": "scratch_converged", "statement": "every seed's scratch run met its "
           "convergence rule (train.convergence), and twice its steps (scratch_2x) change "
           f"validation by less than {threshold:g} (mean over seeds), where measured",
           "threshold": threshold}
    verdicts = [f.get("converged") for f in scratch.values()]
    doubled = facts("scratch_2x")
    common = sorted(set(doubled) & set(scratch))
    checks, evidence = [], {}
    if verdicts and all(v is not None for v in verdicts):
        checks.append(all(verdicts))
        evidence["rule_per_seed"] = verdicts
    if common:
        changes = [doubled[s]["val_score"] - scratch[s]["val_score"] for s in common]
        change = sum(changes) / len(changes)
        checks.append(abs(change) < threshold)
        evidence |= {"doubling_change": change, "doubling_per_seed": changes}
    if not checks:
        rows.append(row | {"measured": None, "passed": None,
                           "note": "needs method scratch with validation during training "
                                   "(scratch.eval_every > 0), or methods scratch and "
                                   "scratch_2x"})
    else:
        measured = (evidence["doubling_change"] if common  # else: the share converged
                    else sum(verdicts) / len(verdicts))
        rows.append(row | {"measured": measured, **evidence, "passed": all(checks)})
    threshold = GATES["block_error"]
    row = {"gate": "block_error", "statement": f"every block's thin-mode relative error after "
           f"stage 2 of ours <= its floor + {threshold:g} (floor: the least error its "
           "interface width allows, 0 where widths agree)", "threshold": threshold}
    excess = [f.get("max_block_error_excess", f.get("max_block_error")) for f in ours.values()]
    if not excess or any(e is None for e in excess):
        rows.append(row | {"measured": None, "passed": None,
                           "note": "needs method ours with its block errors"})
    else:
        errors = [f.get("max_block_error") for f in ours.values()]
        floors = [f.get("max_block_error_floor") for f in ours.values()]
        extra = ({"floor_per_seed": floors, "note": "largest error floor of a narrower "
                  "interface (imitation_loss.error_floor) per seed"} if any(floors) else {})
        rows.append(row | {"measured": max(excess), "per_seed": excess,
                           "max_error_per_seed": errors, **extra,
                           "passed": bool(max(excess) <= threshold)})
    return rows
