"""The results page ``reports/README.md``: our numbers next to the paper's, with where they came from.

A template over the builders of ``kennen/results.py`` (which compute every row and verdict); this module
lays them out as Markdown with the prose that says what each table is. ``read_plots`` knows which plot data
file each stage writes under ``reports/plots``.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

from kennen import results as res
from kennen.attributes import BY_KEY, REPORT_ORDER
from kennen.config import section
from kennen.imagenet.families import ProbeParams
from kennen.io import read_csv
from kennen.metamodel.kennen_i import KennenIParams
from kennen.metamodel.kennen_io import KennenIOParams
from kennen.metamodel.kennen_o import KennenOParams
from kennen.paper import KENNEN_O_BY_OUTPUT, PAPER_ZOO, TABLE2, table4_diagonal_mean
from kennen.transfer.boxes import TransferParams
from kennen.zoo.prune import PruneParams
from kennen.zoo.train import TrainParams

FIGURES = (
    ("kennen-o confusion matrices", "kennen_o/confusion.png"),
    ("accuracy vs training boxes", "kennen_o/sweep_n_train.png"),
    ("accuracy vs queries", "kennen_o/sweep_n_queries.png"),
    ("accuracy by output type", "kennen_o/sweep_output.png"),
    ("extrapolation splits", "kennen_o/sweep_extrapolation.png"),
    ("kennen-i crafted queries", "kennen_i/queries.png"),
    ("kennen-io queries before and after", "kennen_io/queries.png"),
    ("kennen-io extrapolation splits", "kennen_io/extrapolation.png"),
    ("family probe accuracy", "imagenet_probe/accuracy.png"),
    ("family probe confusion", "imagenet_probe/confusion.png"),
    ("attack transfer", "attack/table4.png"),
    ("zoo accuracy", "zoo/acc_hist.png"),
)


def _typed(rows: list[dict[str, str]]) -> list[dict[str, Any]]:
    """CSV cells as numbers where they are numbers ("3" -> 3, "3.0" and "1e-3" stay floats)."""

    def conv(v: str) -> Any:
        try:
            f = float(v)
        except ValueError:
            return v
        return int(f) if f.is_integer() and "." not in v and "e" not in v.lower() else f

    return [{k: conv(v) for k, v in r.items()} for r in rows]


def page_params(raw: dict[str, Any]) -> dict[str, Any]:
    """The params sections the page quotes, parsed and validated, with every default filled in (as plain dicts)."""
    sections = {
        "train_zoo": TrainParams,
        "prune": PruneParams,
        "kennen_o": KennenOParams,
        "kennen_i": KennenIParams,
        "kennen_io": KennenIOParams,
        "imagenet_probe": ProbeParams,
        "transfer": TransferParams,
    }
    return {name: dataclasses.asdict(section(cls, raw, name)) for name, cls in sections.items()}


def read_plots(plots: Path) -> dict[str, Any]:
    """The plot data the page quotes, from the folders the stages write them to, as ``render``'s keyword arguments.

    Args:
        plots: ``reports/plots``.
    Returns:
        ``settings``, ``sweeps``, ``kennen_i_targets``, ``kennen_io_ext`` (empty when kennen-io ran no E split),
        ``probe_rows`` and ``lever_rows`` (empty without the levers stage's table).
    """
    io_ext = plots / "kennen_io" / "extrapolation.csv"
    return {
        "settings": _typed(read_csv(plots / "kennen_o" / "optimisers.csv")),
        "sweeps": {
            s: _typed(read_csv(plots / "kennen_o" / f"sweep_{s}.csv"))
            for s in ("n_train", "n_queries", "output", "extrapolation")
        },
        "kennen_i_targets": _typed(read_csv(plots / "kennen_i" / "targets.csv")),
        "kennen_io_ext": _typed(read_csv(io_ext)) if io_ext.is_file() else [],
        "probe_rows": _typed(read_csv(plots / "imagenet_probe" / "accuracy.csv")),
        "lever_rows": _typed(read_csv(levers)) if (levers := plots / "levers" / "table.csv").is_file() else [],
    }


def table(header: list[str], rows: list[list[Any]]) -> str:
    """A Markdown table; cells through ``results.fmt`` (an empty cell stays one space wide)."""

    def line(cells: list[str]) -> str:
        return "|" + "|".join(f" {c} " if c else " " for c in cells) + "|"

    return "\n".join([line(header), "|" + "---|" * len(header), *(line([res.fmt(v) for v in r]) for r in rows)])


def _titles(keys: tuple[str, ...] | list[str]) -> list[str]:
    return [BY_KEY[k].title for k in keys]


def _settings_text(kp: dict[str, Any]) -> str:
    """kennen-o's optimiser settings in one line, the headline marked."""
    return "; ".join(
        f"`{name}` = {o['name']} lr {o['lr']}, weight decay {o.get('weight_decay', 0)}, "
        f"momentum {o.get('momentum', 0)}, batch {o.get('batch', 100)}, {o.get('epochs', 200)} epochs"
        + (" (headline)" if name == kp["optimiser"] else "")
        for name, o in kp["optimisers"].items()
    )


def _crafted_text(ki: dict[str, Any], kio: dict[str, Any], kennen_i: dict[str, Any]) -> str:
    """kennen-i's and kennen-io's query optimisation in two sentences."""

    def phases(key: str) -> str:
        return ", ".join(f"{ph['train']} {ph['epochs']}" for ph in kio.get(key) or kio["schedule"])

    sched = phases("schedule")
    shorter = "".join(
        f"; {who}: {phases(key)} (ours, for the budget)"
        for key, who in (("cv_schedule", "the folds and the saved model"), ("e_schedule", "the E splits"))
        if kio.get(key)
    )
    return (
        f"kennen-i: {ki['epochs']} epochs of `{ki['step'].get('rule', 'sgd')}` steps, lr {ki['step']['lr']}, "
        f"batches of {ki['step']['batch']} boxes, loss `{ki['loss']}`; "
        f"{kennen_i['in_range']:.1f}% of its test answers name a valid value. "
        f"kennen-io: {kio['n_queries']} queries, schedule (epochs) on the R split {sched}{shorter}, "
        f"`{kio['step'].get('rule', 'sgd')}` steps of lr {kio['step']['lr']}."
    )


def cv_section(
    kennen_o: dict[str, Any],
    kennen_i: dict[str, Any],
    kennen_io: dict[str, Any],
    n_train: list[dict[str, Any]],
    learning_curve: dict[str, Any],
) -> str:
    """The headline: every metamodel cross-validated over configurations, the baselines, the learning curve."""
    if "cv.acc.mean" not in kennen_o:
        return ""
    methods = {"kennen-o": kennen_o, "kennen-i": kennen_i, "kennen-io": kennen_io}
    per_attr = table(["method", *_titles(REPORT_ORDER), "mean"], res.cv_attribute_rows(methods))
    per_attr_boxes = table(["method", *_titles(REPORT_ORDER), "mean"], res.cv_attribute_rows(methods, "acc"))
    columns = ["subsets", "mean over configurations ± sd", "mean over boxes ± sd"]
    ckpt = bool(n_train) and "checkpoints_acc_config_mean" in n_train[0]
    with_ckpt = [f"with checkpoint boxes: {c}" for c in columns] if ckpt else []
    curve = table(["training boxes per fold", *columns, *with_ckpt], res.learning_curve_rows(n_train))
    return f"""## Headline: cross-validation over configurations (ours)

Every box of the zoo is predicted once, by a metamodel trained in one of {int(kennen_o["cv.k"])} folds that never saw
its configuration (a configuration's seed-siblings and its ensembles always sit in one fold; the folds are one
file, `data/splits/folds.json`, shared by every metamodel, sweep and the defences stage, so their figures are
paired): {int(kennen_o["cv.n_boxes"])} boxes of {int(kennen_o["cv.n_configs"])} configurations. Accuracy is
class-balanced per attribute and averaged over the 12, counted two ways: **over configurations** (every
configuration counts once: each box weighs 1 / its configuration's boxes) and **over boxes** (the paper's
counting). 95% intervals resample configurations with all their boxes (1,000 resamples); differences are paired
over the same resamples. The paper's protocol, one random split, is Table 2 below.

| method | mean over configurations [95% CI] | mean over boxes [95% CI] |
|---|---|---|
{chr(10).join("| " + " | ".join(res.fmt(c) for c in row) + " |" for row in res.cv_rows(kennen_o, kennen_i, kennen_io))}

{chr(10).join(res.cv_notes(kennen_o, kennen_io))}

Per attribute, over configurations:

{per_attr}

Per attribute, over boxes:

{per_attr_boxes}

### Learning curve (Figure 4 left, in the folds)

kennen-o trained on random subsets of each fold's training boxes ({n_train[0].get("subsets", 1) if n_train else 0}
subsets per point; the largest point takes every training box of a fold and varies the metamodel seed only),
tested on the fold's boxes; the spread is over subsets.{_checkpoint_curve_text(n_train) if ckpt else ""}

{curve}

{res.learning_curve_text(learning_curve)}

![learning curve](figures/kennen_o/sweep_n_train.png)"""


def _checkpoint_curve_text(n_train: list[dict[str, Any]]) -> str:
    return (
        f" Ours beside it: the same subsets' boxes (the first {n_train[0]['checkpoints_subsets']} of each point) "
        "and the checkpoint boxes of their models, tested on the same final boxes; every other sweep learns from "
        "final boxes only, as the paper."
    )


LEVER_NAMES = {
    "mlp": "kennen-o's MLP",
    "mlp_small": "small MLP",
    "logreg": "logistic regression",
    "pca_logreg": "logistic regression on PCA",
    "centroid": "nearest centroid",
    "knn": "k-nearest neighbours",
}


def levers_section(levers: dict[str, Any], rows: list[dict[str, Any]]) -> str:
    """What each lever adds to kennen-o (the ``levers`` stage): every combination, highest first."""
    ref = levers["reference"]

    def line(r: dict[str, Any]) -> list[Any]:
        if r["lever"] == ref:
            gap, verdict = "reference", ""
        else:
            gap = f"{r['gap_diff']:+.1f} [{r['gap_low']:+.1f}, {r['gap_high']:+.1f}]"
            verdict = "beyond noise" if r["gap_beyond_noise"] else "within noise"
        family = LEVER_NAMES.get(r["family"], r["family"])
        boxes = "final + checkpoints" if r.get("boxes") == "checkpoints" else "final"
        cells = [family, r["n_queries"], r["selection"], boxes, r["decode"], res.ci(r, "mean"), float(r["acc_mean"])]
        ckpt = "" if r.get("ckpt_gap_diff", "") == "" else res.gap_text(r, "ckpt_gap", sep="_")
        return [*cells, gap, verdict, ckpt, f"{r['valid']:.0f}%"]

    header = ["metamodel", "queries", "queries chosen", "training boxes", "answer", "over configurations [95% CI]"]
    header += ["over boxes"]
    header += ["minus the reference [95% CI]", "", "checkpoints add [95% CI]", "valid answers"]
    ordered = sorted(rows, key=lambda r: -r["mean"])
    n_compared = max(len(rows) - 1, 0)
    return f"""## What each lever adds (ours, in the folds)

Every combination of metamodel family, query choice (`first`: the first n of the random draw, the paper's;
`greedy`: chosen on the training fold's boxes only), training boxes (`final` models, the paper's; `final +
checkpoints`: each training box's model also caught part-way through its training, `train_zoo.checkpoints`, with
its labels; the boxes tested are always final models) and answer (`argmax` per head, the paper's; `valid`: the
most probable configuration of Table 1), trained in the same {levers["n_folds"]} folds as the headline:
{levers["n_boxes"]} boxes of {levers["n_configs"]} configurations, each predicted once out of fold. Differences
are paired against the reference, kennen-o as the `kennen_o` stage trains it (`{ref}`), on the same boxes,
with intervals that resample configurations. The verdicts are uncorrected for the {n_compared} comparisons (about
{0.05 * n_compared:.0f} of them would be beyond noise by chance alone), and the top row is the highest of
{len(rows)} noisy means: a lever counts when its row stands well clear, and the greedy queries' criterion was
designed on these same folds.

{table(header, [line(r) for r in ordered])}
{foreign_levers_section(levers)}"""


def foreign_levers_section(levers: dict[str, Any]) -> str:
    """The levers on the transfer stage's foreign boxes (``foreign.*`` keys of the levers metrics), if any."""
    regimes = [k.split(".")[1] for k in levers if k.startswith("foreign.") and k.endswith(".n_boxes")]
    rows = []
    for regime in regimes:
        prefix = f"foreign.{regime}."
        names = [k[len(prefix) : -len(".acc.mean")] for k in levers if k.startswith(prefix) and k.endswith(".acc.mean")]
        for name in names:
            m = {k[len(prefix + name) + 1 :]: v for k, v in levers.items() if k.startswith(f"{prefix}{name}.")}
            gap = res.gap_text(m, "gap") if "gap.diff" in m else "reference"
            ckpt = res.gap_text(m, "ckpt_gap") if "ckpt_gap.diff" in m else ""
            rows.append([regime, levers[f"{prefix}n_boxes"], name, res.ci(m, "acc.mean"), gap, ckpt])
    if not rows:
        return ""
    header = ["regime", "boxes", "lever", "mean of 10 attributes [95% CI]", "minus kennen-o's recipe [95% CI]"]
    header += ["checkpoints add [95% CI]"]
    return f"""
On the `transfer` stage's foreign boxes (trained by other code; the ten attributes it scores), each lever
learns from every zoo box (and its checkpoints where said) on the same number of queries; greedy queries are
chosen on all the zoo's boxes. Intervals resample the foreign boxes' configurations: with a handful of boxes
per regime, they are wide.

{table(header, rows)}
"""


def uncertainty_section(kennen_o: dict[str, Any], kennen_i: dict[str, Any], kennen_io: dict[str, Any]) -> str:
    """Per-attribute intervals of the three headline metamodels, the spread over seeds, and the io - o gap."""
    methods = {"kennen-o": kennen_o, "kennen-i": kennen_i, "kennen-io": kennen_io}
    rows = table(["method", *_titles(REPORT_ORDER), "mean"], res.uncertainty_rows(methods))
    return f"""## Uncertainty of the R split's figures

95% intervals: percentile bootstrap over the R split's test boxes that resamples their configurations, all
boxes of a drawn configuration together (1,000 resamples, all attributes resampled together). The R split
tests {kennen_o.get("n_test", "–")} boxes; with a few dozen test boxes per attribute value, per-attribute
figures move by several points between reruns; call a difference only when the intervals say so.

{rows}

{chr(10).join(res.uncertainty_notes(methods, kennen_io))}"""


def calibration_section(kennen_o: dict[str, Any], kennen_i: dict[str, Any], kennen_io: dict[str, Any]) -> str:
    """Calibration, abstention and out-of-zoo figures of the three metamodels (``kennen/metamodel/calibration.py``)."""
    rows = res.calibration_rows({"kennen-o": kennen_o, "kennen-i": kennen_i, "kennen-io": kennen_io})
    if not rows:
        return ""
    header = ["method", "boxes fitted on", "ECE before", "ECE after", "min confidence", "answered (%)",
              "accuracy answered (%)", "accuracy all (%)", "boxes out of the zoo (%)"]  # fmt: skip
    return f"""## Calibration and abstention (ours)

What `kennen whiten` prints as a probability. The saved metamodels learn from every box; their calibrators
(kennen-o, kennen-io: a temperature per attribute; kennen-i: accuracy per attribute and label, its "before" is
certainty) are fitted on the out-of-fold predictions of every box (the cross-validation's). What is reported is
cross-fitted, so that no box is scored by a calibrator fitted on itself: the boxes of each fold are scaled,
answered or not, and checked for being out of the zoo with what was fitted on the other folds. Expected
calibration error over all 12 attributes' top answers (10 equal-width bins; 95% interval over resampled
configurations), before and after calibration. The default `--min-confidence` is the lowest threshold answering at
>= 90% on the other folds; its share of answers given and their plain accuracy, against the accuracy of all answers.
The last column: boxes the out-of-zoo check flags against the other folds' boxes (99th-percentile threshold, so
about 1% is expected for boxes like the zoo's; a fold's configurations are new to the others, so more is).
Reliability diagrams: `reports/figures/<method>/reliability.png`; accuracy against coverage:
`reports/plots/<method>/risk_coverage.csv` (DVC plots `reliability`, `abstention`).

{table(header, rows)}"""


def defences_section(d: dict[str, Any], output_sweep: list[dict[str, Any]]) -> str:
    """The access ladder (weights, scores, defended scores, rankings, labels) and the strongest setting of each
    defence per attribute, from the ``defences`` stage's metrics and kennen-o's output-type sweep."""
    ladder = table(["access", "setting", "top-1 agreement (%)", "accuracy change (points)", "KL (nats)",
                    "non-adaptive", "adaptive"], res.defence_ladder_rows(d, output_sweep))  # fmt: skip
    per_attr = table(["setting (adaptive)", *_titles(REPORT_ORDER), "mean"], res.defence_attribute_rows(d))
    return f"""## Output defences: what each kind of access gives away (ours)

Every setting of `params.yaml: defences` is applied to the stored answers of every box (`kennen/defences.py`:
rounding, top-k probabilities, label only, Gaussian noise, temperature, reverse sigmoid (Lee et al. 2019, as in
ART), adaptive misinformation (Kariyappa & Qureshi 2020, with an untrained stand-in for their misinformation
network)). Utility is measured on the defended box itself over all {d["utility_queries"]} stored query images:
top-1 agreement with the undefended box, change of its top-1 accuracy, mean KL divergence from the undefended
answer. kennen-o ({d["n_queries"]} queries, headline settings) attacks each setting twice in the
{d["n_folds"]} cross-validation folds ({d["n_boxes"]} boxes of {d["n_configs"]} configurations, each tested
once): **non-adaptive**, trained on clean answers and tested on defended ones; **adaptive**, trained and
tested on defended answers. Mean class-balanced accuracy over boxes with 95% intervals over resampled
configurations; chance {d["chance"]:.1f}. The paper's only comparable figure is its
output-type ablation: kennen-o on top-1 labels {KENNEN_O_BY_OUTPUT["top1"]} against
{KENNEN_O_BY_OUTPUT["prob"]} on probabilities (chance {TABLE2["chance"]["mean"]}). The white-box row reads
the weights instead (Unterthiner et al. 2020 statistics per layer slot, `kennen/metamodel/weights.py`); the
ranking rows come from kennen-o's output-type sweep, the last from kennen-i, which needs only labels.

{ladder}

{res.defence_verdict(d)}

Per attribute, the strongest (last listed) setting of each defence against the adaptive attacker:

{per_attr}

![privacy-utility](figures/defences/privacy_utility.png)"""


def imagenet_section(probe: dict[str, Any], rows: list[dict[str, Any]], params: dict[str, Any]) -> str:
    """The family probe next to the paper's §7 figures, labelled by mode."""
    pp = params["imagenet_probe"]
    families = list(pp["families"])
    header = ["features", "queries", "family accuracy [95% CI over tries]", *families, "paper (pretrained, prob)"]
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
The paper: {res.paper_family_probe()}.

{table(header, res.family_probe_rows(probe, rows, families))}"""


def transfer_section(t: dict[str, Any], params: dict[str, Any]) -> str:
    """Metamodels on black boxes of a trainer the zoo never saw, next to their in-zoo cross-validated figures."""
    regimes = params.get("transfer", {}).get("regimes", {})
    header = ["regime", "boxes scored", "median box test acc.", "metamodel", "mean acc. [95% CI]",
              "in-zoo (cross-validated)", "verdict"]  # fmt: skip
    keys = [k for k in REPORT_ORDER if k not in ("split", "ens")]
    per = table(["regime", "metamodel", *_titles(keys)], res.transfer_attribute_rows(t, regimes, keys))
    conf = table(["regime", "metamodel", "flagged out of the zoo (%)", "answered (%)", "accuracy answered (%)",
                  "accuracy all (%)", "ECE"], res.transfer_confidence_rows(t, regimes))  # fmt: skip
    return f"""## Black boxes the zoo never saw (`transfer`)

Classifiers trained by a second, separate trainer (`kennen/transfer/foreign.py`: the official-style loop
with a `DataLoader`, its own permutation of the 60,000 training images and its own seeds; it shares no
training code with the zoo), a balanced sample of Table 1 per regime, saved as `torch.export` programs
and whitened through `kennen whiten`'s own code path. Scored on the 10 attributes a foreign box can be
scored on (chance {t.get("chance_mean", float("nan")):.1f}%): `split` names images of the zoo's own
permutation, which the foreign boxes never saw, and every foreign box is a single model (`ens`). `size`
is scored as the fraction (all / half / quarter) of the foreign pool. Boxes below `transfer.min_acc`
are trained but not whitened, as the zoo is pruned. Intervals resample the foreign boxes' configurations
(every foreign box is a configuration of its own here); the verdict compares the interval with the in-zoo
figure (the mean over the same 10 attributes of the cross-validated predictions, over boxes).

{table(header, res.transfer_rows(t, regimes))}

Per attribute (class-balanced accuracy, 95% interval):

{per}

What whiten's confidence says on these boxes: the share flagged as outside the zoo, the share of
the ten answers given at each metamodel's default `--min-confidence`, the plain accuracy of the answers given
and of all answers, and the ECE of the calibrated probabilities on the foreign boxes:

{conf}"""


def attack_section(attack: dict[str, Any]) -> str:
    """Tables 4 and 5 next to the paper's, with whether its conclusion holds here."""
    a, families = attack["attack"], list(attack["table4"]["clean"])
    table4 = table(["generating \\ target (paper)", *families], res.table4_rows(attack))
    table5 = table(["scenario", "misclassification, this run", "paper", "fooled (of clean-correct), this run"],
                   res.table5_rows(attack))  # fmt: skip
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
Diagonal mean {attack["table4_diagonal_mean"]:.1f} (paper {table4_diagonal_mean():.1f}).

{table4}

{table5}

{res.attack_verdict(attack)}"""


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
    learning_curve: dict[str, Any] | None = None,
    levers: dict[str, Any] | None = None,
    lever_rows: list[dict[str, Any]] | None = None,
) -> str:
    """Markdown of the results page from the pipeline's own metrics and plot data."""
    kp, tz, pz = params["kennen_o"], params["train_zoo"], PAPER_ZOO
    out = sweeps.get("output", [])
    t2 = res.table2_rows(kennen_o, settings, out, kennen_i, kennen_i_targets, kennen_io, params)
    means = {"kennen-io": kennen_io["acc.mean"], "kennen-o": kennen_o["acc.mean"], "kennen-i": kennen_i["acc.mean"]}
    ext_header = ["split", "train boxes", "test boxes", "E mean acc.", "R mean acc.", "kennen-o relative",
                  "kennen-io relative", "paper (kennen-io)"]  # fmt: skip
    later = "\n\n".join(  # an absent optional section leaves its blank lines, as the committed page has them
        (
            transfer_section(transfer, params) if transfer else "",
            defences_section(defences, out) if defences else "",
            imagenet_section(probe, probe_rows, params),
            attack_section(attack) if attack else "",
        )
    )
    return f"""# kennen results (generated by `dvc repro`; do not edit)

This page is written by the `report` stage from `reports/metrics/*.json` and `reports/plots/`.
Every number below comes from the committed run of the current `params.yaml`; the paper's numbers
(Oh et al., ICLR 2018, Tables 2 and 3) are quoted next to them.

## The zoo

{table(["", "this run", "paper"], res.zoo_rows(zoo, kennen_o, params))}

{cv_section(kennen_o, kennen_i, kennen_io, sweeps.get("n_train", []), learning_curve or {})}

{levers_section(levers, lever_rows or []) if levers else ""}

## Table 2: the paper's protocol, one random split ({kp["n_queries"]} queries; kennen-i: one per attribute)

Class-balanced accuracy (%) per attribute and its plain mean; chance is 1/#classes.
kennen-o settings ({kp["hidden"]} hidden units): {_settings_text(kp)}. The official code's own settings are SGD
lr 1e-4, weight decay 0.01, batch 100, 200 epochs (its heads were never trained; ours are).
{_crafted_text(params["kennen_i"], params["kennen_io"], kennen_i)}

{table(["method", "output", *_titles(REPORT_ORDER), "mean"], t2)}

{res.ordering(means)}

Our zoo is {zoo["n_final"]} black boxes trained for {tz["epochs"]} epoch(s) on at most
{tz["pool_size"]:,} images, against the paper's {pz["n_final"]:,} trained for {pz["epochs"]} epochs on up to {pz["pool_size"]:,},
and the metamodel learns from {kennen_o["n_train"]} boxes instead of {pz["n_train"]:,}: the numbers are comparable in
protocol, not in scale.

## Output types (paper §4, Figure 4 right, in the folds)

{table(["output", "mean acc.", "scaled (chance 0, perfect 100)", "paper mean"], res.output_rows(out))}

## Number of queries (Figure 4 middle, in the folds)

{table(["queries", "mean acc.", "scaled"], res.curve_rows(sweeps.get("n_queries", []), "n_queries"))}

## Table 3 analogue: extrapolation splits

kennen-o and kennen-io (the paper reports kennen-io) trained on boxes without the held-out values and tested
on boxes with them. The average leaves out the held-out attributes (and size/split together), which no
training box shows; relative accuracy = 100 × (E − chance) / (R − chance) over the same attributes, each
method against its own R result. The accuracy columns are kennen-o's.

{table(ext_header, res.extrapolation_rows(sweeps.get("extrapolation", []), kennen_io_ext))}

{uncertainty_section(kennen_o, kennen_i, kennen_io)}

{calibration_section(kennen_o, kennen_i, kennen_io)}

{later}

## Figures

{chr(10).join(f"![{alt}](figures/{path})" for alt, path in FIGURES)}
"""
