"""Pure builders of the results page's tables: metrics dicts in, table rows (lists of cells) and verdicts out.

Each builder takes the pipeline's own metrics (``reports/metrics/*.json``, ``reports/plots/*.csv`` rows)
and sets the paper's figure (``kennen/paper.py``) next to ours. Nothing here reads files;
``kennen/results_page.py`` lays the rows out as Markdown.
"""

from __future__ import annotations

from typing import Any

from kennen.attributes import BY_KEY, REPORT_ORDER
from kennen.paper import (
    FAMILY_PROBE,
    FAMILY_PROBE_SETUP,
    KENNEN_O_BY_OUTPUT,
    METHOD_MEANS,
    PAPER_ZOO,
    TABLE2,
    TABLE3_KENNEN_IO,
    TABLE4,
    TABLE5,
)

NAN = float("nan")
Row = list[Any]
TRANSFER_METHODS = {
    "kennen_o": "kennen-o (prob)",
    "kennen_io": "kennen-io (prob)",
    "kennen_i": "kennen-i (top-1 label)",
}


def fmt(v: Any) -> str:
    """One table cell: floats to one decimal ("–" for NaN), anything else as ``str``."""
    if isinstance(v, float):
        return "–" if v != v else f"{v:.1f}".replace("-0.0", "0.0")  # no "-0.0" for a rounded -0.04
    return str(v)


def ci(m: dict[str, Any], key: str) -> str:
    """``m[key]`` with its 95% interval ``[key_low, key_high]`` when the metrics carry one (``59.5 [55.1, 63.8]``)."""
    v = m.get(key, NAN)
    lo, hi = m.get(f"{key}_low"), m.get(f"{key}_high")
    if lo is None or hi is None or lo != lo or hi != hi:
        return fmt(float(v))
    return f"{v:.1f} [{lo:.1f}, {hi:.1f}]"


def _mean_ci(m: dict[str, Any], key: str = "mean") -> str:
    """``ci`` of a metrics dict whose interval keys are ``<key>_low`` / ``<key>_high`` without an ``acc.`` prefix."""
    return ci({"m": m[key], "m_low": m.get(f"{key}_low"), "m_high": m.get(f"{key}_high")}, "m")


def zoo_rows(zoo: dict[str, Any], kennen_o: dict[str, Any], params: dict[str, Any]) -> list[Row]:
    """The zoo against the paper's (§2-3): rows of (what, this run, paper)."""
    tz, p = params["train_zoo"], PAPER_ZOO
    n_par = len(BY_KEY["n_par"].values)
    return [
        ["models trained", zoo["n_models"], f"{p['n_models']:,}"],
        ["epochs per model, training images", f"{tz['epochs']}, subsets of {tz['pool_size']:,}",
         f"{p['epochs']}, subsets of {p['pool_size']:,}"],
        [f"kept after pruning (test accuracy ≥ {params['prune']['min_acc']}%)", zoo["n_kept"],
         f"{p['n_kept']:,} (≥ {p['min_acc']}%)"],
        ["ensembles", zoo["n_ensembles"], f"{p['n_ensembles']:,}"],
        ["black boxes in all", zoo["n_final"], f"{p['n_final']:,}"],
        ["mean test accuracy of all trained models", f"{zoo['acc_mean']:.1f}%", "–"],
        ["`n_par` classes present", f"{zoo['n_par_classes']} of {n_par}", n_par],
        ["meta-train / meta-test boxes (R split)", f"{kennen_o['n_train']} / {kennen_o['n_test']}",
         f"{p['n_train']:,} / {p['n_test']:,}"],
        ["boxes / configurations tested (cross-validation)",
         f"{kennen_o.get('cv.n_boxes', '–')} / {kennen_o.get('cv.n_configs', '–')}", "–"],
    ]  # fmt: skip


def table2_rows(
    kennen_o: dict[str, Any],
    settings: list[dict[str, Any]],
    output_sweep: list[dict[str, Any]],
    kennen_i: dict[str, Any],
    kennen_i_targets: list[dict[str, Any]],
    kennen_io: dict[str, Any],
    params: dict[str, Any],
) -> list[Row]:
    """Table 2: chance, our metamodels (every kennen-o optimiser setting and output type, both kennen-i targets,
    kennen-io) and the paper's rows; cells (method, output, *REPORT_ORDER, mean)."""
    chance = [round(BY_KEY[k].chance, 1) for k in REPORT_ORDER]
    rows = [
        ["chance (Table 1)", "–", *chance, round(sum(chance) / len(chance), 1)],
        ["paper: chance", "–", *(TABLE2["chance"][k] for k in REPORT_ORDER), TABLE2["chance"]["mean"]],
    ]
    kp, ki = params["kennen_o"], params["kennen_i"]
    ckpt = kp.get("boxes") == "checkpoints"
    for s in settings:
        headline = s["setting"] == kp["optimiser"]
        if s["setting"] == "final_boxes":  # the headline setting on final boxes only, beside one with checkpoints
            label = f"kennen-o, `{kp['optimiser']}` optimiser, final boxes (the paper's recipe)"
        else:
            label = f"kennen-o, `{s['setting']}` optimiser" + (", checkpoint boxes (ours)" if ckpt else "")
            label += " (headline)" if headline else ""
        mean = ci(kennen_o, "acc.mean") if headline else s["mean"]
        rows.append([label, kp["output"], *(s[k] for k in REPORT_ORDER), mean])
    for r in output_sweep:
        if r["output"] != kp["output"] and r["output"] in ("top10", "top1", "bottom1"):
            label = f"kennen-o, `{kp['optimiser']}` optimiser" + (", final boxes" if ckpt else "")
            rows.append([label, r["output"], *(r[k] for k in REPORT_ORDER), r["acc_mean"]])
    target_text = {"each": "one query per attribute", "all": "one query for all (official run.py)"}
    for t in kennen_i_targets:
        headline = t["target"] == ki["target"]
        label = f"kennen-i, {target_text[t['target']]}" + (" (headline)" if headline else "")
        mean = ci(kennen_i, "acc.mean") if headline else t["mean"]
        rows.append([label, "top1 label", *(t[k] for k in REPORT_ORDER), mean])
    rows.append(["kennen-io", "prob", *(kennen_io[f"acc.{k}"] for k in REPORT_ORDER), ci(kennen_io, "acc.mean")])
    for name, paper in TABLE2.items():
        if name != "chance":
            method, output = name.split()
            rows.append([f"paper: {method}", output, *(paper[k] for k in REPORT_ORDER), paper["mean"]])
    return rows


def ordering(means: dict[str, float]) -> str:
    """A sentence comparing the methods' order of mean accuracy with the paper's (io > o > i)."""
    ours = sorted(means, key=lambda k: -means[k])
    paper = sorted(METHOD_MEANS, key=lambda k: -METHOD_MEANS[k])
    chain = " > ".join(f"{k} ({means[k]:.1f})" for k in ours)
    paper_chain = " > ".join(f"{k} ({METHOD_MEANS[k]:.1f})" for k in paper)
    verdict = "the same order as the paper's" if ours == paper else "not the paper's order"
    gaps = [means[a] - means[b] for a, b in zip(ours, ours[1:], strict=False)]
    close = " A gap under two points between neighbours is within the noise of this test set." if min(gaps) < 2 else ""
    return f"Mean accuracy here: {chain}; the paper: {paper_chain}. That is {verdict}.{close}"


def output_rows(output_sweep: list[dict[str, Any]]) -> list[Row]:
    """kennen-o by output type (§4, Figure 4 right): output, mean, chance-scaled mean, the paper's Table 2 mean."""
    return [
        [r["output"], r["acc_mean"], r["acc_scaled"], KENNEN_O_BY_OUTPUT.get(r["output"], NAN)] for r in output_sweep
    ]


def curve_rows(sweep: list[dict[str, Any]], x: str) -> list[Row]:
    """A Figure 4 curve (``x`` = ``n_train`` or ``n_queries``): x, mean, chance-scaled mean."""
    return [[r[x], r["acc_mean"], r["acc_scaled"]] for r in sweep]


def extrapolation_rows(sweep: list[dict[str, Any]], kennen_io_ext: list[dict[str, Any]]) -> list[Row]:
    """Table 3 analogue: per E split, kennen-o's sizes and accuracies, both methods' relative accuracy, the paper's."""
    io_rel = {r["split"]: r["relative"] for r in kennen_io_ext}
    return [
        [r["split"], r["n_train"], r["n_test"], r["acc_mean"], r["r_acc_mean"], r["relative"],
         io_rel.get(r["split"], NAN), TABLE3_KENNEN_IO.get(r["split"], NAN)]
        for r in sweep
    ]  # fmt: skip


def uncertainty_rows(methods: dict[str, dict[str, Any]]) -> list[Row]:
    """Per-attribute accuracy with its 95% interval for each metamodel: name, *REPORT_ORDER, mean."""
    return [[name, *(ci(m, f"acc.{k}") for k in REPORT_ORDER), ci(m, "acc.mean")] for name, m in methods.items()]


def uncertainty_notes(methods: dict[str, dict[str, Any]], kennen_io: dict[str, Any]) -> list[str]:
    """Bullet lines: each metamodel's spread over seeds, and kennen-io − kennen-o on the same boxes."""
    lines = []
    for name, m in methods.items():
        if "seeds.acc.mean" in m:
            lines.append(
                f"- {name} over {int(m.get('seeds.n', 0)) or 'several'} metamodel seeds: mean {ci(m, 'seeds.acc.mean')}"
                f" (t-interval of the mean over seeds; sd {m.get('seeds.acc.mean_sd', NAN):.2f})."
            )
    gap = {k.removeprefix("gap_vs_o."): v for k, v in kennen_io.items() if k.startswith("gap_vs_o.")}
    if "diff" in gap:
        called = "beyond noise" if gap.get("beyond_noise") else "within noise (the interval includes 0)"
        paper = METHOD_MEANS["kennen-io"] - METHOD_MEANS["kennen-o"]
        lines.append(
            f"- kennen-io − kennen-o on the same R test boxes: {gap['diff']:+.1f} points, 95% paired bootstrap interval "
            f"[{gap['low']:+.1f}, {gap['high']:+.1f}]: {called}. The paper: {paper:+.1f}."
        )
    return lines


def calibration_rows(methods: dict[str, dict[str, Any]]) -> list[Row]:
    """ECE before and after calibration, the abstention threshold and what it answers, the out-of-zoo rate."""
    rows = []
    for name, m in methods.items():
        if "ece_after" not in m:
            continue

        def e(key: str, m=m) -> str:
            return f"{m[key]:.3f} [{m.get(key + '_low', NAN):.3f}, {m.get(key + '_high', NAN):.3f}]"

        rows.append([name, int(m.get("calibration.n_val", 0)), e("ece_before"), e("ece_after"),
                     f"{m['abstain.min_confidence']:.2f}", m["abstain.coverage"], m["abstain.accuracy"],
                     m["abstain.accuracy_all"], m["ood.test_rate"]])  # fmt: skip
    return rows


def transfer_scores(t: dict[str, Any], regimes: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    """(regime, metamodel key, its metrics without the ``<regime>.<key>.`` prefix) for each scored pair."""
    out = []
    for name in regimes:
        for key in TRANSFER_METHODS:
            m = {k.removeprefix(f"{name}.{key}."): v for k, v in t.items() if k.startswith(f"{name}.{key}.")}
            if "acc.mean" in m:
                out.append((name, key, m))
    return out


def transfer_rows(t: dict[str, Any], regimes: dict[str, Any]) -> list[Row]:
    """Foreign boxes per regime and metamodel: mean accuracy against the in-zoo R-split figure, with a verdict."""
    rows = []
    for name, key, m in transfer_scores(t, regimes):
        reg, zoo = regimes[name], m["in_zoo_mean"]
        lo, hi = m.get("acc.mean_low", NAN), m.get("acc.mean_high", NAN)
        call = "below the zoo" if hi < zoo else ("above the zoo" if lo > zoo else "within noise of the zoo")
        rows.append([f"{name} ({reg['epochs']} epoch(s), {reg['pool']:,} pool)", t.get(f"{name}.n_scored"),
                     t.get(f"{name}.box_acc_median"), TRANSFER_METHODS[key], ci(m, "acc.mean"), zoo, call])  # fmt: skip
    return rows


def transfer_attribute_rows(t: dict[str, Any], regimes: dict[str, Any], keys: list[str]) -> list[Row]:
    """Per-attribute accuracy on foreign boxes (the attributes ``keys`` a foreign box can be scored on)."""
    return [
        [name, TRANSFER_METHODS[key], *(ci(m, f"acc.{k}") for k in keys)]
        for name, key, m in transfer_scores(t, regimes)
    ]


def transfer_confidence_rows(t: dict[str, Any], regimes: dict[str, Any]) -> list[Row]:
    """What whiten's confidence says on foreign boxes: out-of-zoo share, answered share and accuracies, ECE."""
    return [
        [name, TRANSFER_METHODS[key], m.get("ood_rate", NAN), m.get("answered", NAN), m.get("answered_acc", NAN),
         m.get("all_acc", NAN), "–" if m.get("ece", NAN) != m.get("ece", NAN) else f"{m['ece']:.3f}"]
        for name, key, m in transfer_scores(t, regimes) if "all_acc" in m
    ]  # fmt: skip


def strongest_defences(settings: dict[str, dict[str, Any]]) -> list[str]:
    """The last listed (strongest) setting of each defence, in order of first appearance."""
    last: dict[str, str] = {}
    for name, s in settings.items():
        if name != "none":
            last[s["defence"]] = name
    return list(last.values())


def defence_ladder_rows(d: dict[str, Any], output_sweep: list[dict[str, Any]]) -> list[Row]:
    """The access ladder: weights, scores, each defended setting (utility, non-adaptive and adaptive attacker),
    kennen-o's rankings and labels from its output sweep, and kennen-i on labels."""
    na = ["–"] * 4
    rows = [["weights (white box)", "per-layer weight statistics, gradient boosting", *na, _mean_ci(d["whitebox"])]]
    for name, s in d["settings"].items():
        u = s["utility"]
        access = {"none": "scores", "label": "labels"}.get(name, "defended scores")
        nonadaptive = "–" if name == "none" else _mean_ci(s["nonadaptive"])
        rows.append(
            [access, f"`{name}`", u["agreement"], u["acc_change"], u["kl"], nonadaptive, _mean_ci(s["adaptive"])]
        )
    for r in output_sweep:
        if r["output"] != "prob":
            access = "ranking" if r["output"] != "top1" else "labels"
            rows.append([access, f"`{r['output']}` (kennen-o sweep)", *na, _mean_ci(r, "acc_mean")])
    rows.append(["labels", "crafted queries (kennen-i)", *na, _mean_ci(d["label_kennen_i"])])
    return rows


def defence_attribute_rows(d: dict[str, Any]) -> list[Row]:
    """Per attribute: the white box, the undefended scores and each defence's strongest setting (adaptive)."""
    settings = d["settings"]
    rows = [["white box", *(d["whitebox"][k] for k in REPORT_ORDER), d["whitebox"]["mean"]]]
    for name in ["none", *strongest_defences(settings)]:
        a = settings[name]["adaptive"]
        rows.append([f"`{name}`", *(a[k] for k in REPORT_ORDER), a["mean"]])
    return rows


def defence_verdict(d: dict[str, Any]) -> str:
    """Which defences lower the adaptive attacker's mean beyond noise, and what the weights give.

    The verdict is paired: the same boxes out of fold, with and without the defence, resampled over
    the same configurations (``adaptive_vs_none``, over configurations). The rule the page used with one
    R split, 95% intervals apart, is counted beside it.
    """
    settings, clean, wb = d["settings"], d["settings"]["none"]["adaptive"], d["whitebox"]
    strongest = strongest_defences(settings)
    below = [n for n in strongest if settings[n]["adaptive_vs_none"]["high"] < 0]
    within = [n for n in strongest if n not in below]
    apart = [n for n in strongest if settings[n]["adaptive"]["mean_high"] < clean["mean_low"]]
    more = "more, beyond noise." if wb["mean_low"] > clean["mean_high"] else "no more beyond noise."
    changed = sorted(set(below) ^ set(apart))
    return (
        f"Against the adaptive attacker, the strongest setting of {len(below)} of {len(strongest)} defences lowers "
        f"the mean accuracy over configurations below the undefended {clean.get('config_mean', NAN):.1f} beyond "
        f"noise (paired 95% interval over resampled configurations below 0): "
        f"{', '.join(f'`{n}`' for n in below) or 'none'}; within noise: {', '.join(f'`{n}`' for n in within) or 'none'}. "
        f"With the rule of a single split (the two intervals apart) it would be {len(apart)}"
        + (f"; the verdict differs for {', '.join(f'`{n}`' for n in changed)}." if changed else ", the same verdicts.")
        + f" The weights give {wb['mean']:.1f} [{wb['mean_low']:.1f}, {wb['mean_high']:.1f}] against "
        f"{clean['mean']:.1f} from scores (over boxes, intervals over configurations): {more}"
    )


def family_probe_rows(probe: dict[str, Any], rows: list[dict[str, Any]], families: list[str]) -> list[Row]:
    """The family probe per feature and number of queries (§7): accuracy with its interval, per family, the paper's."""
    return [
        [f"`{r['feature']}`" + (" (headline)" if r["feature"] == probe["feature"] else ""), r["n_queries"],
         ci(r, "acc"), *(r[f"acc.{f}"] for f in families), FAMILY_PROBE.get(r["n_queries"], NAN)]
        for r in rows
    ]  # fmt: skip


def paper_family_probe() -> str:
    """The paper's §7 result in words."""
    (n1, a1), (n2, a2) = FAMILY_PROBE.items()
    s = FAMILY_PROBE_SETUP
    return (
        f"{a1}% with {n1:,} queries, {a2}% with {n2:,} "
        f"({s['n_models']} pretrained models, {s['folds']} folds × {s['draws']} draws)"
    )


def table4_rows(attack: dict[str, Any]) -> list[Row]:
    """Table 4, ours with the paper's in brackets: generating set (families bold), one cell per target family."""
    t4 = attack["table4"]
    families = list(t4["clean"])
    return [
        [f"**{r}**" if r in families else r,
         *(f"{t4[r][f]:.1f} ({TABLE4.get(r, {}).get(f, '–')})" for f in families)]
        for r in t4
    ]  # fmt: skip


def table5_rows(attack: dict[str, Any]) -> list[Row]:
    """Table 5: scenario, our misclassification, the paper's, and ours among images the target gets right clean."""
    t5, fooled = attack["table5"], attack["fooled"]["table5"]
    return [[s.replace("_", " "), t5[s], TABLE5.get(s, NAN), fooled[s]] for s in t5]


def attack_verdict(attack: dict[str, Any]) -> str:
    """Whether the paper's conclusion (knowing the family makes the black-box attack stronger) holds here."""
    t4, t5 = attack["table4"], attack["table5"]
    families = list(t4["clean"])
    wins = [f for f in families if t4[f][f] > max(t4[g][f] for g in families if g != f)]
    # Two standard errors of the difference of two rates over targets x images (independence assumed).
    n = attack["targets"] * attack["images"]
    p1, p2 = t5["true_family"] / 100, t5["all_families"] / 100
    noise = 200 * ((p1 * (1 - p1) + p2 * (1 - p2)) / n) ** 0.5
    gap = t5["true_family"] - t5["all_families"]
    if gap > noise and t5["predicted_family"] > t5["all_families"]:
        holds = "**holds** here"
    elif gap > 0:
        holds = f"points the same way here, but within noise (two standard errors: {noise:.1f} points)"
    else:
        holds = "**does not hold** here"
    return (
        f"Within-family images transfer best to {len(wins)} of {len(families)} target families"
        f"{' (' + ', '.join(wins) + ')' if wins else ''}; the true family gives {t5['true_family']:.1f}% and the "
        f"probe's family {t5['predicted_family']:.1f}% against {t5['all_families']:.1f}% for one model of every "
        f"family ({gap:+.1f} points), so the paper's conclusion (knowing the family makes the black-box attack "
        f"stronger) {holds}."
    )


def cv_rows(kennen_o: dict[str, Any], kennen_i: dict[str, Any], kennen_io: dict[str, Any]) -> list[Row]:
    """The headline table: every method in the cross-validation folds, mean over configurations and over boxes
    with their 95% intervals (configurations resampled), then the paper's R-split means for reference."""

    def row(name: str, m: dict[str, Any], prefix: str = "cv") -> Row:
        return [name, ci(m, f"{prefix}.acc_config.mean"), ci(m, f"{prefix}.acc.mean")]

    ckpt = kennen_o.get("cv.checkpoint_boxes", 0) > 0
    rows = [row(f"kennen-o (prob; ours: adam, early stopping{', checkpoint boxes' if ckpt else ''})", kennen_o)]
    if "cv.final_boxes.acc_config.mean" in kennen_o:
        rows.append(
            row("kennen-o (prob; adam, early stopping; final boxes only, the paper's)", kennen_o, "cv.final_boxes")
        )
    if "cv.official.acc_config.mean" in kennen_o:
        label = "official optimiser settings" + (", checkpoint boxes" if ckpt else "")
        rows.append(row(f"kennen-o (prob; {label})", kennen_o, "cv.official"))
    for kind, label in (("logreg", "logistic regression (baseline)"), ("knn", "5-nearest neighbours (baseline)")):
        if f"cv.{kind}.acc_config.mean" in kennen_o:
            rows.append(row(label, kennen_o, f"cv.{kind}"))
    if "cv.acc.mean" in kennen_i:
        rows.append(row("kennen-i (top-1 label of crafted queries)", kennen_i))
    if "cv.acc.mean" in kennen_io:
        rows.append(row("kennen-io (prob, learned queries)", kennen_io))
    for name in ("kennen-o", "kennen-i", "kennen-io"):
        rows.append([f"paper: {name} (R split, {PAPER_ZOO['n_train']:,} training boxes)", "–", METHOD_MEANS[name]])
    return rows


def cv_attribute_rows(methods: dict[str, dict[str, Any]], kind: str = "acc_config") -> list[Row]:
    """Per attribute, each method's cross-validated accuracy (``kind``: ``acc_config`` or ``acc``) with its interval."""
    return [
        [name, *(ci(m, f"cv.{kind}.{k}") for k in REPORT_ORDER), ci(m, f"cv.{kind}.mean")]
        for name, m in methods.items()
        if f"cv.{kind}.mean" in m
    ]


def gap_text(m: dict[str, Any], prefix: str, sep: str = ".") -> str:
    """``+1.2 [-0.3, +2.8], within noise`` from ``<prefix><sep>diff``, ``low``, ``high`` and ``beyond_noise`` of
    ``m`` (metrics keys, or a CSV row's columns with ``sep`` ``_``); ``–`` when ``m`` has no such difference."""
    g = {k.removeprefix(f"{prefix}{sep}"): v for k, v in m.items() if k.startswith(f"{prefix}{sep}")}
    if "diff" not in g:
        return "–"
    called = "beyond noise" if g.get("beyond_noise") else "within noise"
    return f"{g['diff']:+.1f} [{g['low']:+.1f}, {g['high']:+.1f}], {called}"


def cv_notes(kennen_o: dict[str, Any], kennen_io: dict[str, Any]) -> list[str]:
    """Bullet lines: what the MLP adds over the baselines, io - o, and the spread over metamodel seeds."""
    lines = []
    if "cv.vs_final_boxes.acc_config.diff" in kennen_o:
        lines.append(
            f"- kennen-o with the {int(kennen_o['cv.checkpoint_boxes'])} checkpoint boxes of its training boxes' models "
            f"− without them (the paper's recipe), same folds and seed, over configurations: "
            f"{gap_text(kennen_o, 'cv.vs_final_boxes.acc_config')} (over boxes: "
            f"{gap_text(kennen_o, 'cv.vs_final_boxes.acc')})."
        )
    for kind, label in (("logreg", "logistic regression"), ("knn", "5-nearest neighbours")):
        if f"cv.vs_{kind}.acc_config.diff" in kennen_o:
            lines.append(
                f"- kennen-o's MLP − {label}, same boxes, over configurations: "
                f"{gap_text(kennen_o, f'cv.vs_{kind}.acc_config')} (over boxes: "
                f"{gap_text(kennen_o, f'cv.vs_{kind}.acc')})."
            )
    if "cv.gap_vs_o.acc_config.diff" in kennen_io:
        paper = METHOD_MEANS["kennen-io"] - METHOD_MEANS["kennen-o"]
        lines.append(
            f"- kennen-io − its warm start (kennen-o on the initial queries, same seed and folds), over "
            f"configurations: {gap_text(kennen_io, 'cv.gap_vs_o.acc_config')} (over boxes: "
            f"{gap_text(kennen_io, 'cv.gap_vs_o.acc')}). The paper: {paper:+.1f}."
        )
    if "cv.seeds.acc_config.mean_sd" in kennen_o:
        lines.append(
            f"- kennen-o over {int(kennen_o['cv.seeds.n'])} metamodel seeds (every seed cross-validated): mean over "
            f"configurations {ci(kennen_o, 'cv.seeds.acc_config.mean')} (t-interval over seeds; sd "
            f"{kennen_o['cv.seeds.acc_config.mean_sd']:.2f})."
        )
    return lines


def learning_curve_rows(sweep: list[dict[str, Any]]) -> list[Row]:
    """The learning curve: training boxes, subsets, mean over configurations +- sd over subsets, over boxes; then
    the same for the curve with checkpoint boxes where the sweep has it (``checkpoints_*`` columns)."""
    prefixes = ("", "checkpoints_") if sweep and "checkpoints_acc_config_mean" in sweep[0] else ("",)
    return [
        [r["n_train"]]
        + [
            cell
            for p in prefixes
            for cell in (
                r.get(f"{p}subsets", 1),
                f"{r[f'{p}acc_config_mean']:.1f} ± {r.get(f'{p}acc_config_sd', 0.0):.1f}",
                f"{r[f'{p}acc_mean']:.1f} ± {r.get(f'{p}acc_sd', 0.0):.1f}",
            )
        ]
        for r in sweep
    ]


def learning_curve_text(fit: dict[str, Any]) -> str:
    """The fitted power law and the boxes it says each target needs (with configuration-bootstrap intervals); the
    same for the curve with checkpoint boxes where ``fit`` has it (``checkpoints.fit.*``)."""
    text = _curve_fit_text({k: v for k, v in fit.items() if k.startswith("fit.")})
    ckpt = {k.removeprefix("checkpoints."): v for k, v in fit.items() if k.startswith("checkpoints.fit.")}
    return text if not ckpt else f"{text}\n\nWith checkpoint boxes: {_curve_fit_text(ckpt)}"


def _curve_fit_text(fit: dict[str, Any]) -> str:
    if not fit.get("fit.ok"):
        return "The power law could not be fitted to these points."

    def boxes(key: str) -> str:
        v = fit.get(key)
        return "never (the fitted plateau is below)" if v is None else f"{v:,.0f}"

    parts = []
    for key in sorted(k for k in fit if k.startswith("fit.boxes_for_") and not k.endswith(("_low", "_high"))):
        target = key.removeprefix("fit.boxes_for_")
        parts.append(f"{target}%: {boxes(key)} boxes (95% interval {boxes(key + '_low')} to {boxes(key + '_high')})")
    plateau = (
        f"plateau c = {fit['fit.c']:.1f} [{fit.get('fit.c_low', NAN):.1f}, {fit.get('fit.c_high', NAN):.1f}]"
        if fit.get("fit.c_low", 0.0) < 99.9
        else "no plateau below 100 in reach of these points (c runs to its bound of 100 in every resample, so the "
        "box counts below assume the curve keeps rising; a plateau would make them larger)"
    )
    return (
        f"Fitted acc(n) = c − a·n^(−b) to the means over configurations: {plateau}; exponent b = {fit['fit.b']:.2f} "
        f"[{fit.get('fit.b_low', NAN):.2f}, {fit.get('fit.b_high', NAN):.2f}] (intervals: the fit repeated on "
        f"{int(fit.get('fit.n_boot', 0))} resamples of the configurations). Training boxes the curve needs to "
        "reach " + "; ".join(parts) + ". An extrapolation of a few points: read it as an order of magnitude."
    )
