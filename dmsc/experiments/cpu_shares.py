"""Where the CPU went, from cpu.csv: each role's share of the machine, per variant.

cpu.csv (written by the runner, :func:`dmsc.experiments.runner.cpu_rows`) has, per repetition,
a row per node program and workload client, ``other`` (the machine's remaining busy time: the
kernel forwarding between namespaces, the runner, pings, tc) and ``idle``; the rows of one
repetition add up to the machine's CPU time over its timeline. A role's *share* in a
repetition is the sum of its rows over that total; cpu_shares.csv gives per (variant, role)
the median share over repetitions, its smallest and largest, and ``cpu_per_s``, the role's
median CPU seconds per second of wall time (1.0 is one CPU kept busy).
"""

from __future__ import annotations

import pandas as pd

from dmsc import results

#: the roles in the order the figure stacks them: the data plane first, the control plane
#: next, what is left last
ROLES = ("sg", "sr", "pod", "client", "spa", "scsc", "other", "idle")
COLUMNS = ("variant", "role", "repetitions", "share_median", "share_min", "share_max",
           "cpu_per_s")  # fmt: skip


def cpu_shares(cpu: pd.DataFrame | None, variants: tuple[str, ...]) -> pd.DataFrame:
    """cpu_shares.csv from cpu.csv (empty when the run has none: older results)."""
    if cpu is None or cpu.empty:
        return pd.DataFrame(columns=list(COLUMNS))
    per_role = cpu.groupby(["variant", "repetition", "role"], sort=False).agg(
        cpu_s=("cpu_s", "sum"), wall_s=("wall_s", "first")
    )
    totals = per_role.groupby(level=["variant", "repetition"])["cpu_s"].transform("sum")
    per_role["share"] = per_role["cpu_s"] / totals.where(totals > 0)
    per_role["cpu_per_s"] = per_role["cpu_s"] / per_role["wall_s"].where(per_role["wall_s"] > 0)
    rows = []
    for variant in variants:
        if variant not in per_role.index.get_level_values("variant"):
            continue
        mine = per_role.xs(variant, level="variant")
        roles = set(mine.index.get_level_values("role"))
        for role in [*ROLES, *sorted(roles - set(ROLES))]:
            if role not in roles:
                continue
            values = mine.xs(role, level="role")
            rows.append({
                "variant": variant, "role": role, "repetitions": len(values),
                "share_median": values["share"].median(), "share_min": values["share"].min(),
                "share_max": values["share"].max(), "cpu_per_s": values["cpu_per_s"].median(),
            })  # fmt: skip
    return pd.DataFrame(rows, columns=list(COLUMNS))


def cpu_figure(shares: pd.DataFrame, title: str):
    """One horizontal bar per variant, each role's median share stacked (so the bars may
    fall a little short of or past 100 %: medians of parts are not parts of a median)."""
    plt = results.pyplot()
    variants = list(dict.fromkeys(shares["variant"]))
    figure, axis = plt.subplots(figsize=(9, 1.4 + 0.5 * max(len(variants), 1)))
    present = set(shares["role"])
    roles = [*(r for r in ROLES if r in present), *sorted(present - set(ROLES))]
    left = [0.0] * len(variants)
    for index, role in enumerate(roles):
        widths = [_share(shares, v, role) * 100 for v in variants]
        colour = "0.85" if role == "idle" else f"C{index % 10}"
        axis.barh(variants, widths, left=left, color=colour, label=role)
        left = [a + b for a, b in zip(left, widths, strict=True)]
    if not variants:
        axis.text(0.5, 0.5, "no cpu.csv", ha="center", transform=axis.transAxes)
    axis.invert_yaxis()
    axis.set_xlim(0, 100)
    axis.set_xlabel("share of the machine's CPU time during the timeline (%, median)")
    axis.legend(loc="center left", bbox_to_anchor=(1.01, 0.5), fontsize=8)
    axis.set_title(title, fontsize=10)
    figure.tight_layout()
    return figure


def _share(shares: pd.DataFrame, variant: str, role: str) -> float:
    row = shares[(shares["variant"] == variant) & (shares["role"] == role)]
    return 0.0 if row.empty else float(row["share_median"].iloc[0])
