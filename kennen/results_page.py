"""The results page ``reports/README.md``: our numbers next to the paper's, with where they came from."""

from __future__ import annotations

from typing import Any

from kennen.attributes import BY_KEY, REPORT_ORDER
from kennen.paper import PAPER_ZOO, TABLE2, TABLE3_KENNEN_IO


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return "–" if v != v else f"{v + 0.0:.1f}".replace("-0.0", "0.0")  # no "-0.0" for a rounded -0.04
    return str(v)


def ci(m: dict[str, Any], key: str) -> str:
    """``m[key]`` with its 95% interval ``[key_low, key_high]`` when the metrics carry one (``59.5 [55.1, 63.8]``)."""
    v = m.get(key, float("nan"))
    lo, hi = m.get(f"{key}_low"), m.get(f"{key}_high")
    if lo is None or hi is None or lo != lo or hi != hi:
        return _fmt(float(v))
    return f"{v:.1f} [{lo:.1f}, {hi:.1f}]"


def _table(header: list[str], rows: list[list[Any]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(_fmt(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)


def ordering(means: dict[str, float]) -> str:
    """A sentence comparing the methods' order of mean accuracy with the paper's (io > o > i)."""
    ours = sorted(means, key=lambda k: -means[k])
    chain = " > ".join(f"{k} ({means[k]:.1f})" for k in ours)
    paper = ["kennen-io", "kennen-o", "kennen-i"]
    verdict = "the same order as the paper's" if ours == paper else "not the paper's order"
    gaps = [means[a] - means[b] for a, b in zip(ours, ours[1:], strict=False)]
    close = " A gap under two points between neighbours is within the noise of this test set." if min(gaps) < 2 else ""
    return (
        f"Mean accuracy here: {chain}; the paper: kennen-io (80.1) > kennen-o (73.4) > kennen-i (52.7). "
        f"That is {verdict}.{close}"
    )


def uncertainty_section(kennen_o: dict[str, Any], kennen_i: dict[str, Any], kennen_io: dict[str, Any]) -> str:
    """Per-attribute intervals of the three headline metamodels, the spread over seeds, and the io - o gap."""
    methods = {"kennen-o": kennen_o, "kennen-i": kennen_i, "kennen-io": kennen_io}
    table = _table(
        ["method", *(BY_KEY[k].title for k in REPORT_ORDER), "mean"],
        [[name, *(ci(m, f"acc.{k}") for k in REPORT_ORDER), ci(m, "acc.mean")] for name, m in methods.items()],
    )
    lines = []
    for name, m in methods.items():
        if "seeds.acc.mean" in m:
            lines.append(
                f"- {name} over {int(m.get('seeds.n', 0)) or 'several'} metamodel seeds: mean {ci(m, 'seeds.acc.mean')}"
                f" (t-interval of the mean over seeds; sd {m.get('seeds.acc.mean_sd', float('nan')):.2f})."
            )
    gap = {k.removeprefix("gap_vs_o."): v for k, v in kennen_io.items() if k.startswith("gap_vs_o.")}
    if "diff" in gap:
        called = "beyond noise" if gap.get("beyond_noise") else "within noise (the interval includes 0)"
        lines.append(
            f"- kennen-io − kennen-o on the same R test boxes: {gap['diff']:+.1f} points, 95% paired bootstrap interval "
            f"[{gap['low']:+.1f}, {gap['high']:+.1f}]: {called}. The paper: +6.7."
        )
    return f"""## Uncertainty of the headline figures

95% intervals: percentile bootstrap over the R split's test boxes (1,000 resamples of the boxes, all
attributes resampled together). With a few dozen test boxes per attribute value, per-attribute
figures move by several points between reruns (a rerun on another machine moved them by up to 13
points while the means moved by 1–2); call a difference only when the intervals say so.

{table}

{chr(10).join(lines)}"""


def calibration_section(kennen_o: dict[str, Any], kennen_i: dict[str, Any], kennen_io: dict[str, Any]) -> str:
    """Calibration, abstention and out-of-zoo figures of the three metamodels (``kennen/metamodel/calibration.py``)."""
    methods = {"kennen-o": kennen_o, "kennen-i": kennen_i, "kennen-io": kennen_io}
    rows = []
    for name, m in methods.items():
        if "ece_after" not in m:
            continue

        def e(key: str, m=m) -> str:
            return f"{m[key]:.3f} [{m.get(key + '_low', float('nan')):.3f}, {m.get(key + '_high', float('nan')):.3f}]"

        rows.append([name, int(m.get("calibration.n_val", 0)), e("ece_before"), e("ece_after"),
                     f"{m['abstain.min_confidence']:.2f}", m["abstain.coverage"], m["abstain.accuracy"],
                     m["abstain.accuracy_all"], m["ood.test_rate"]])  # fmt: skip
    if not rows:
        return ""
    table = _table(["method", "validation boxes", "ECE before", "ECE after", "min confidence", "answered (%)",
                    "accuracy answered (%)", "accuracy all (%)", "R test boxes out of the zoo (%)"], rows)  # fmt: skip
    return f"""## Calibration and abstention (ours)

What `kennen whiten` prints as a probability. Fitted on a validation carve of the training boxes, evaluated
on the R test boxes: expected calibration error over all 12 attributes' top answers (10 equal-width bins;
95% bootstrap interval over test boxes), before and after calibration (kennen-o, kennen-io: a temperature per
attribute; kennen-i: validation accuracy per attribute and label, its "before" is certainty). The default
`--min-confidence` is the lowest threshold answering at >= 90% on validation; its share of answers given and
their plain accuracy on the test boxes, against the accuracy of all answers. The last column: test boxes the
out-of-zoo check flags (99th-percentile threshold, so about 1% is expected for boxes like the zoo's).
Reliability diagrams: `reports/figures/<method>/reliability.png`; accuracy against coverage:
`reports/plots/<method>/risk_coverage.csv` (DVC plots `reliability`, `abstention`).

{table}"""


def _beyond(a: dict[str, Any], b: dict[str, Any]) -> bool:
    """Whether mean accuracy ``a`` lies below ``b`` beyond noise: their 95% intervals do not overlap."""
    return a["mean_high"] < b["mean_low"]


def defences_section(d: dict[str, Any], output_sweep: list[dict[str, Any]]) -> str:
    """The access ladder (weights, scores, defended scores, rankings, labels) and the strongest setting of each
    defence per attribute, from the ``defences`` stage's metrics and kennen-o's output-type sweep."""
    settings = d["settings"]
    clean = settings["none"]

    def acc(m: dict[str, Any]) -> str:
        return ci({"m": m["mean"], "m_low": m.get("mean_low"), "m_high": m.get("mean_high")}, "m")

    rows = [["weights (white box)", "per-layer weight statistics, gradient boosting", "–", "–", "–", "–",
             acc(d["whitebox"])]]  # fmt: skip
    for name, s in settings.items():
        u = s["utility"]
        access = "scores" if name == "none" else "defended scores"
        if name == "label":
            access = "labels"
        na = "–" if name == "none" else acc(s["nonadaptive"])
        rows.append([access, f"`{name}`", u["agreement"], u["acc_change"], u["kl"], na, acc(s["adaptive"])])
    for r in output_sweep:
        if r["output"] != "prob":
            rows.append(["ranking" if r["output"] != "top1" else "labels", f"`{r['output']}` (kennen-o sweep)", "–",
                         "–", "–", "–", ci({"m": r["acc_mean"], "m_low": r.get("acc_mean_low"),
                                            "m_high": r.get("acc_mean_high")}, "m")])  # fmt: skip
    rows.append(["labels", "crafted queries (kennen-i)", "–", "–", "–", "–", acc(d["label_kennen_i"])])
    ladder = _table(["access", "setting", "top-1 agreement (%)", "accuracy change (points)", "KL (nats)",
                     "non-adaptive", "adaptive"], rows)  # fmt: skip

    last: dict[str, str] = {}
    for name, s in settings.items():
        if name != "none":
            last[s["defence"]] = name
    strongest = list(last.values())
    per_attr = [["white box", *(d["whitebox"][k] for k in REPORT_ORDER), d["whitebox"]["mean"]]]
    per_attr.append(["`none`", *(clean["adaptive"][k] for k in REPORT_ORDER), clean["adaptive"]["mean"]])
    for name in strongest:
        a = settings[name]["adaptive"]
        per_attr.append([f"`{name}`", *(a[k] for k in REPORT_ORDER), a["mean"]])
    attr_table = _table(["setting (adaptive)", *(BY_KEY[k].title for k in REPORT_ORDER), "mean"], per_attr)

    below = [n for n in strongest if _beyond(settings[n]["adaptive"], clean["adaptive"])]
    within = [n for n in strongest if n not in below]
    verdict = (
        f"Against the adaptive attacker, the strongest setting of {len(below)} of {len(strongest)} defences lowers "
        f"the mean accuracy below the undefended {clean['adaptive']['mean']:.1f} beyond noise (intervals apart): "
        f"{', '.join(f'`{n}`' for n in below) or 'none'}; within noise: {', '.join(f'`{n}`' for n in within) or 'none'}."
    )
    wb = d["whitebox"]
    wb_line = (
        f"The weights give {wb['mean']:.1f} [{wb['mean_low']:.1f}, {wb['mean_high']:.1f}] against "
        f"{clean['adaptive']['mean']:.1f} from scores: "
        + ("more, beyond noise." if wb["mean_low"] > clean["adaptive"]["mean_high"] else "no more beyond noise.")
    )
    return f"""## Output defences: what each kind of access gives away (ours)

Every setting of `params.yaml: defences` is applied to the stored answers of every box (`kennen/defences.py`:
rounding, top-k probabilities, label only, Gaussian noise, temperature, reverse sigmoid (Lee et al. 2019, as in
ART), adaptive misinformation (Kariyappa & Qureshi 2020, with an untrained stand-in for their misinformation
network)). Utility is measured on the defended box itself over all {d["utility_queries"]} stored query images:
top-1 agreement with the undefended box, change of its top-1 accuracy, mean KL divergence from the undefended
answer. kennen-o ({d["n_queries"]} queries, headline settings) attacks each setting twice on the R split
({d["n_train"]} training, {d["n_test"]} test boxes): **non-adaptive**, trained on clean answers and tested on
defended ones; **adaptive**, trained and tested on defended answers. Mean class-balanced accuracy with 95%
bootstrap intervals over test boxes; chance {d["chance"]:.1f}. The paper's only comparable figure is its
output-type ablation: kennen-o on top-1 labels {TABLE2["kennen-o top1"]["mean"]} against
{TABLE2["kennen-o prob"]["mean"]} on probabilities (chance {TABLE2["chance"]["mean"]}). The white-box row reads
the weights instead (Unterthiner et al. 2020 statistics per layer slot, `kennen/metamodel/weights.py`); the
ranking rows come from kennen-o's output-type sweep, the last from kennen-i, which needs only labels.

{ladder}

{verdict} {wb_line}

Per attribute, the strongest (last listed) setting of each defence against the adaptive attacker:

{attr_table}

![privacy-utility](figures/defences/privacy_utility.png)"""


def imagenet_section(probe: dict[str, Any], rows: list[dict[str, Any]], params: dict[str, Any]) -> str:
    """The family probe next to the paper's 90.4 / 94.8 (§7), labelled by mode."""
    pp = params["imagenet_probe"]
    families = list(pp["families"])
    paper = {100: 90.4, 1000: 94.8}
    table = _table(
        ["features", "queries", "family accuracy [95% CI over tries]", *families, "paper (pretrained, prob)"],
        [[f"`{r['feature']}`" + (" (headline)" if r["feature"] == probe["feature"] else ""), r["n_queries"], ci(r, "acc"),
          *(r[f"acc.{f}"] for f in families), paper.get(r["n_queries"], float("nan"))] for r in rows],
    )  # fmt: skip
    if probe["mode"] == "offline":
        o = pp["offline"]
        what = (
            "**Offline surrogate, not the paper's experiment.** The same torchvision classes "
            f"(`get_model(name, num_classes=10)`), {o['seeds']} seed(s) per architecture, each trained for "
            f"{o['steps']} SGD steps of {o['batch']} MNIST digits padded to {o['image_size']}×{o['image_size']} RGB "
            f"(mean accuracy on the query pool {probe['surrogate_query_acc_mean']:.1f}%), queried with MNIST test "
            "digits. Families differ here in architecture and brief training, not in ImageNet training: "
            "the numbers show that the protocol runs and what architecture alone reveals, not the paper's result."
        )
    else:
        what = "Pretrained torchvision ImageNet weights, queried with natural images: the paper's experiment."
    return f"""## ImageNet model families (paper §7)

{what} {probe["n_models"]} models of {probe["n_architectures"]} architectures in {len(families)} families;
{probe["folds"]} folds, each holding out one model per family (its architecture unseen in training),
× {probe["draws"]} query draws; kennen-o's MLP on the outputs: `prob` = the log-probabilities as they are
(the paper's input), `sorted` = each query's log-probabilities sorted, so that the MLP sees the shape of the
output distribution but not which class it favours (ours; the surrogates' class preferences after brief
training are arbitrary). Chance {probe["chance"]:.1f}%.
The paper: 90.4% with 100 queries, 94.8% with 1,000 (19 pretrained models, 10 folds × 10 draws).

{table}"""


TRANSFER_METHODS = {
    "kennen_o": "kennen-o (prob)",
    "kennen_io": "kennen-io (prob)",
    "kennen_i": "kennen-i (top-1 label)",
}


def transfer_section(t: dict[str, Any], params: dict[str, Any]) -> str:
    """Metamodels on black boxes of a trainer the zoo never saw, next to their in-zoo R-split figures."""
    regimes = params.get("transfer", {}).get("regimes", {})
    rows, verdicts = [], []
    for name, reg in regimes.items():
        for key, label in TRANSFER_METHODS.items():
            m = {k.removeprefix(f"{name}.{key}."): v for k, v in t.items() if k.startswith(f"{name}.{key}.")}
            if "acc.mean" not in m:
                continue
            zoo = m["in_zoo_mean"]
            lo, hi = m.get("acc.mean_low", float("nan")), m.get("acc.mean_high", float("nan"))
            call = "below the zoo" if hi < zoo else ("above the zoo" if lo > zoo else "within noise of the zoo")
            rows.append([f"{name} ({reg['epochs']} epoch(s), {reg['pool']:,} pool)", t.get(f"{name}.n_scored"),
                         t.get(f"{name}.box_acc_median"), label, ci(m, "acc.mean"), zoo, call])  # fmt: skip
            verdicts.append((name, key, m))
    table = _table(
        [
            "regime",
            "boxes scored",
            "median box test acc.",
            "metamodel",
            "mean acc. [95% CI]",
            "in-zoo R split",
            "verdict",
        ],
        rows,
    )
    conf = _table(
        ["regime", "metamodel", "flagged out of the zoo (%)", "answered (%)", "accuracy answered (%)",
         "accuracy all (%)", "ECE"],
        [[name, TRANSFER_METHODS[key], m.get("ood_rate", float("nan")), m.get("answered", float("nan")),
          m.get("answered_acc", float("nan")), m.get("all_acc", float("nan")),
          "–" if m.get("ece", float("nan")) != m.get("ece", float("nan")) else f"{m['ece']:.3f}"]
         for name, key, m in verdicts if "all_acc" in m],
    )  # fmt: skip
    keys = [k for k in REPORT_ORDER if k not in ("split", "ens")]
    per = _table(
        ["regime", "metamodel", *(BY_KEY[k].title for k in keys)],
        [[name, TRANSFER_METHODS[key], *(ci(m, f"acc.{k}") for k in keys)] for name, key, m in verdicts],
    )
    return f"""## Black boxes the zoo never saw (`transfer`)

Classifiers trained by a second, separate trainer (`kennen/transfer/foreign.py`: the official-style loop
with a `DataLoader`, its own permutation of the 60,000 training images and its own seeds; it shares no
training code with the zoo), a balanced sample of Table 1 per regime, saved as `torch.export` programs
and whitened through `kennen whiten`'s own code path. Scored on the 10 attributes a foreign box can be
scored on (chance {t.get("chance_mean", float("nan")):.1f}%): `split` names images of the zoo's own
permutation, which the foreign boxes never saw, and every foreign box is a single model (`ens`). `size`
is scored as the fraction (all / half / quarter) of the foreign pool. Boxes below `transfer.min_acc`
are trained but not whitened, as the zoo is pruned. Intervals: bootstrap over the foreign boxes; the
verdict compares the interval with the in-zoo figure (the mean over the same 10 attributes on the R split).

{table}

Per attribute (class-balanced accuracy, 95% interval):

{per}

What whiten's confidence says on these boxes (issue 16): the share flagged as outside the zoo, the share of
the ten answers given at each metamodel's default `--min-confidence`, the plain accuracy of the answers given
and of all answers, and the ECE of the calibrated probabilities on the foreign boxes:

{conf}"""


def attack_section(attack: dict[str, Any]) -> str:
    """Tables 4 and 5 next to the paper's, with whether its conclusion holds here."""
    t4, t5, paper = attack["table4"], attack["table5"], attack["paper"]
    families = list(t4["clean"])
    rows4 = [[f"**{r}**" if r in families else r, *(f"{t4[r][f]:.1f} ({paper['table4'][r][f]})" for f in families)]
             for r in t4]  # fmt: skip
    table4 = _table(["generating \\ target (paper)", *families], rows4)
    fool = attack["fooled"]["table5"]
    table5 = _table(
        ["scenario", "misclassification, this run", "paper", "fooled (of clean-correct), this run"],
        [[s.replace("_", " "), t5[s], paper["table5"][s], fool[s]] for s in t5],
    )
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
    a = attack["attack"]
    verdict = (
        f"Within-family images transfer best to {len(wins)} of {len(families)} target families"
        f"{' (' + ', '.join(wins) + ')' if wins else ''}; the true family gives {t5['true_family']:.1f}% and the "
        f"probe's family {t5['predicted_family']:.1f}% against {t5['all_families']:.1f}% for one model of every "
        f"family ({gap:+.1f} points), so the paper's conclusion (knowing the family makes the black-box attack "
        f"stronger) {holds}."
    )
    what = attack["label"] + (
        ", attacked on MNIST test digits outside the probe's query pool." if attack["mode"] == "offline" else "."
    )
    return f"""## Family-aware adversarial examples (paper §7, Tables 4 and 5)

{what} {attack["targets"]} targets (one model per architecture), {attack["images"]} images, untargeted
L∞ PGD on the mean cross-entropy of the generating models (eps {a["eps"]}, step {a["step"]}, {a["steps"]}
steps, random start {a["random_start"]}), pixel range kept; the paper used GAMAN, which is not public,
with an unreported budget. Misclassification = 100 − top-1 accuracy. Within a family, leave-one-out;
across families, the generating family minus one member; `ens` one model of every family, never the
target. The probe named {attack["probe"]["right"]} of {attack["probe"]["of"]} targets' families
({attack["probe"]["feature"]} features, {attack["probe"]["queries"]} queries, the target's architecture unseen).
Diagonal mean {attack["table4_diagonal_mean"]:.1f} (paper 86.4).

{table4}

{table5}

{verdict}"""


def render(
    zoo: dict[str, Any],
    kennen_o: dict[str, Any],
    settings: list[dict[str, Any]],
    sweeps: dict[str, list[dict[str, Any]]],
    params: dict[str, Any],
    kennen_i: dict[str, Any],
    kennen_i_targets: list[dict[str, Any]],
    kennen_io: dict[str, Any],
    kennen_io_ext: list[dict[str, Any]],
    probe: dict[str, Any],
    probe_rows: list[dict[str, Any]],
    attack: dict[str, Any] | None = None,
    transfer: dict[str, Any] | None = None,
    defences: dict[str, Any] | None = None,
) -> str:
    """Markdown of the results page from the pipeline's own metrics and plot data."""
    cols = [BY_KEY[k].title for k in REPORT_ORDER]
    chance = [round(BY_KEY[k].chance, 1) for k in REPORT_ORDER]
    rows = [
        ["chance (Table 1)", "–", *chance, round(sum(chance) / 12, 1)],
        ["paper: chance", "–", *(TABLE2["chance"][k] for k in REPORT_ORDER), TABLE2["chance"]["mean"]],
    ]
    kp = params["kennen_o"]
    for s in settings:
        headline = s["setting"] == kp["optimiser"]
        label = f"kennen-o, `{s['setting']}` optimiser" + (" (headline)" if headline else "")
        rows.append(
            [label, kp["output"], *(s[k] for k in REPORT_ORDER), ci(kennen_o, "acc.mean") if headline else s["mean"]]
        )
    for r in sweeps.get("output", []):
        if r["output"] != kp["output"] and r["output"] in ("top10", "top1", "bottom1"):
            rows.append([f"kennen-o, `{kp['optimiser']}` optimiser", r["output"], *(r[k] for k in REPORT_ORDER),
                         r["acc_mean"]])  # fmt: skip
    ki, kio = params["kennen_i"], params["kennen_io"]
    target_text = {"each": "one query per attribute", "all": "one query for all (official run.py)"}
    for t in kennen_i_targets:
        headline = t["target"] == ki["target"]
        label = f"kennen-i, {target_text[t['target']]}" + (" (headline)" if headline else "")
        rows.append(
            [label, "top1 label", *(t[k] for k in REPORT_ORDER), ci(kennen_i, "acc.mean") if headline else t["mean"]]
        )
    rows.append(["kennen-io", "prob", *(kennen_io[f"acc.{k}"] for k in REPORT_ORDER), ci(kennen_io, "acc.mean")])
    for name in ("kennen-o prob", "kennen-o top10", "kennen-o top1", "kennen-i top1", "kennen-io prob"):
        rows.append(
            [
                f"paper: {name.split()[0]}",
                name.split()[1],
                *(TABLE2[name][k] for k in REPORT_ORDER),
                TABLE2[name]["mean"],
            ]
        )
    order_note = ordering(
        {"kennen-io": kennen_io["acc.mean"], "kennen-o": kennen_o["acc.mean"], "kennen-i": kennen_i["acc.mean"]}
    )
    sched = ", ".join(f"{ph['train']} {ph['epochs']}" for ph in kio["schedule"])
    crafted_text = (
        f"kennen-i: {ki['epochs']} epochs of `{ki['step'].get('rule', 'sgd')}` steps, lr {ki['step']['lr']}, "
        f"batches of {ki['step']['batch']} boxes, loss `{ki['loss']}`; "
        f"{kennen_i['in_range']:.1f}% of its test answers name a valid value. "
        f"kennen-io: {kio['n_queries']} queries, schedule (epochs) {sched}, "
        f"`{kio['step'].get('rule', 'sgd')}` steps of lr {kio['step']['lr']}."
    )

    out = sweeps.get("output", [])
    paper_out = {
        "prob": TABLE2["kennen-o prob"]["mean"],
        "top10": TABLE2["kennen-o top10"]["mean"],
        "top1": TABLE2["kennen-o top1"]["mean"],
    }
    out_rows = [[r["output"], r["acc_mean"], r["acc_scaled"], paper_out.get(r["output"], float("nan"))] for r in out]
    ext = sweeps.get("extrapolation", [])
    io_rel = {r["split"]: r["relative"] for r in kennen_io_ext}
    ext_rows = [
        [
            r["split"],
            r["n_train"],
            r["n_test"],
            r["acc_mean"],
            r["r_acc_mean"],
            r["relative"],
            io_rel.get(r["split"], float("nan")),
            TABLE3_KENNEN_IO.get(r["split"], float("nan")),
        ]
        for r in ext
    ]
    ntr = sweeps.get("n_train", [])
    nq = sweeps.get("n_queries", [])
    settings_text = "; ".join(
        f"`{name}` = {o['name']} lr {o['lr']}, weight decay {o.get('weight_decay', 0)}, "
        f"momentum {o.get('momentum', 0)}, batch {o.get('batch', 100)}, {o.get('epochs', 200)} epochs"
        + (" (headline)" if name == kp["optimiser"] else "")
        for name, o in kp["optimisers"].items()
    )

    return f"""# kennen results (generated by `dvc repro`; do not edit)

This page is written by the `report` stage from `reports/metrics/*.json` and `reports/plots/`.
Every number below comes from the committed run of the current `params.yaml`; the paper's numbers
(Oh et al., ICLR 2018, Tables 2 and 3) are quoted next to them.

## The zoo

| | this run | paper |
|---|---|---|
| models trained | {zoo["n_models"]} | {PAPER_ZOO["n_models"]:,} |
| epochs per model, training images | {params["train_zoo"]["epochs"]}, subsets of {
        params["train_zoo"]["pool_size"]:,} | 100, subsets of 60,000 |
| kept after pruning (test accuracy ≥ {params["prune"]["min_acc"]}%) | {zoo["n_kept"]} | {
        PAPER_ZOO["n_kept"]:,} (≥ 98%) |
| ensembles | {zoo["n_ensembles"]} | {PAPER_ZOO["n_ensembles"]:,} |
| black boxes in all | {zoo["n_final"]} | {PAPER_ZOO["n_final"]:,} |
| mean test accuracy of all trained models | {zoo["acc_mean"]:.1f}% | – |
| `n_par` classes present | {zoo["n_par_classes"]} of 8 | 8 |
| meta-train / meta-test boxes (R split) | {kennen_o["n_train"]} / {kennen_o["n_test"]} | {PAPER_ZOO["n_train"]:,} / {
        PAPER_ZOO["n_test"]:,} |

## Table 2: the random split ({kp["n_queries"]} queries; kennen-i: one per attribute)

Class-balanced accuracy (%) per attribute and its plain mean; chance is 1/#classes.
kennen-o settings ({kp["hidden"]} hidden units): {settings_text}. The official code's own settings are SGD
lr 1e-4, weight decay 0.01, batch 100, 200 epochs (its heads were never trained; ours are).
{crafted_text}

{_table(["method", "output", *cols, "mean"], rows)}

{order_note}

Our zoo is {zoo["n_final"]} black boxes trained for {params["train_zoo"]["epochs"]} epoch(s) on at most
{params["train_zoo"]["pool_size"]:,} images, against the paper's 11,282 trained for 100 epochs on up to 60,000,
and the metamodel learns from {kennen_o["n_train"]} boxes instead of 5,000: the numbers are comparable in
protocol, not in scale.

## Output types (paper §4, Figure 4 right)

{_table(["output", "mean acc.", "scaled (chance 0, perfect 100)", "paper mean"], out_rows)}

## Training-set size and number of queries (Figure 4 left and middle)

{_table(["training boxes", "mean acc.", "scaled"], [[r["n_train"], r["acc_mean"], r["acc_scaled"]] for r in ntr])}

{_table(["queries", "mean acc.", "scaled"], [[r["n_queries"], r["acc_mean"], r["acc_scaled"]] for r in nq])}

## Table 3 analogue: extrapolation splits

kennen-o and kennen-io (the paper reports kennen-io) trained on boxes without the held-out values and tested
on boxes with them. The average leaves out the held-out attributes (and size/split together), which no
training box shows; relative accuracy = 100 × (E − chance) / (R − chance) over the same attributes, each
method against its own R result. The accuracy columns are kennen-o's.

{
        _table(
            [
                "split",
                "train boxes",
                "test boxes",
                "E mean acc.",
                "R mean acc.",
                "kennen-o relative",
                "kennen-io relative",
                "paper (kennen-io)",
            ],
            ext_rows,
        )
    }

{uncertainty_section(kennen_o, kennen_i, kennen_io)}

{calibration_section(kennen_o, kennen_i, kennen_io)}

{transfer_section(transfer, params) if transfer else ""}

{defences_section(defences, sweeps["output"]) if defences else ""}

{imagenet_section(probe, probe_rows, params)}

{attack_section(attack) if attack else ""}

## Figures

![kennen-o confusion matrices](figures/kennen_o/confusion.png)
![accuracy vs training boxes](figures/kennen_o/sweep_n_train.png)
![accuracy vs queries](figures/kennen_o/sweep_n_queries.png)
![accuracy by output type](figures/kennen_o/sweep_output.png)
![extrapolation splits](figures/kennen_o/sweep_extrapolation.png)
![kennen-i crafted queries](figures/kennen_i/queries.png)
![kennen-io queries before and after](figures/kennen_io/queries.png)
![kennen-io extrapolation splits](figures/kennen_io/extrapolation.png)
![family probe accuracy](figures/imagenet_probe/accuracy.png)
![family probe confusion](figures/imagenet_probe/confusion.png)
![attack transfer](figures/attack/table4.png)
![zoo accuracy](figures/zoo/acc_hist.png)
"""
