"""The Markdown the app shows: predictions, photo quality, example photos and the fairness card.

The service returns plain dicts (the API gives them as JSON); these functions
draw them for people. They live beside ``app.py``, the only place that shows
them, so wording and layout change here without touching the service.
"""

from __future__ import annotations

from skin.service import ExamplePhoto
from skin.service.service import BUILD_HINT
from skin.service.readout import NOT_CONFIDENT
from skin.tasks import completed_years
from skin.tone import ITA_DARK_MAX, ITA_LIGHT_MIN


def _fmt2(v) -> str:
    """A metric with two decimals, or a dash when it was not measured."""
    return "–" if v is None else f"{v:.2f}"


def _full_stop(clause: str) -> str:
    """A reason the service gives as a clause (it is also quoted inside other text), ended as a sentence."""
    clause = clause.rstrip()
    return clause if clause.endswith((".", "!", "?")) else clause + "."


def _pct(v) -> str:
    """A probability as a whole percentage, or a dash."""
    return "–" if v is None else f"{v:.0%}"


def _bucket_name(row: dict) -> str:
    """A fairness-card row's tone bucket, marked when it is the visitor's."""
    return f"**▶ {row['bucket']} (you)**" if row["is_user"] else row["bucket"]


def photo_type_markdown(result: dict) -> str | None:
    """The photo type the models were chosen by ("Detected: … — not right? choose"), or ``None`` when
    the gate is off and no type was chosen."""
    from skin.phototype import PHOTO_TYPE_NAMES

    kind = result.get("photo_type") or {}
    label = kind.get("label")
    if label is None:
        return None
    if kind.get("overridden"):
        detected = kind.get("detected")
        seen = f" (detected: {PHOTO_TYPE_NAMES[detected]})" if detected else ""
        return f"**Photo type: {PHOTO_TYPE_NAMES[label]}** — chosen by you{seen}."
    how = f"found by the {kind['rule']}" if kind.get("rule") else _pct(kind.get("probability"))
    line = (f"**Detected: {PHOTO_TYPE_NAMES[label]}** ({how}) — not right? "
            "Choose the photo type under the photo and press Analyse again.")
    if kind.get("message"):
        line += f"\n\n**No answer** — {_full_stop(kind['message'])}"
        problems = (result.get("quality") or {}).get("problems") or []
        if problems:  # a dark, blurred or washed-out photo of skin can look like no photo of skin at all
            names = "; ".join(p.get("message", "").rstrip(".") for p in problems)
            line += f" The photo itself may be why: {names}. Try the tips below, then analyse again."
    return line


def notice_markdown(status: dict[str, dict], gate: dict) -> str | None:
    """The page's notice from :meth:`SkinLensService.status` and ``.gate()``: the missing models and how to
    build them, and whether the photo-type gate is off (``None`` when everything is there)."""
    parts = []
    missing = [s["problem"] for s in status.values() if not s["available"]]
    if missing:
        lines = "\n".join(f"- {p}" for p in missing)
        parts.append(f"⚠️ **Some models are missing**, so their results are not shown:\n{lines}\n\n"
                     f"To fix: {BUILD_HINT}.")
    if not gate["on"]:
        parts.append(f"⚠️ **Photo-type gate off**: every model answers every photo. {gate['problem']}.")
    return "\n\n".join(parts) or None


def predictions_markdown(result: dict) -> str:
    """The photo type, then each task's answer from :meth:`SkinLensService.predict`'s result, or why
    there is none (an out-of-scope picture: one message instead of one per task)."""
    head = photo_type_markdown(result)
    if head and (result.get("photo_type") or {}).get("message"):
        return head
    parts = [head] if head else []
    for t in result["tasks"].values():
        head = f"### {t['title']}"
        if t.get("status") == "unavailable":
            parts.append(f"{head}\n⚠️ Not available: {_full_stop(t['reason'])}")
            continue
        if t.get("abstained") and not t.get("top_k"):
            parts.append(f"{head}\n**No answer** — {_full_stop(t['reason'])}")
            continue
        lines = [head]
        if t.get("abstained"):
            why = t["reason"].removeprefix(NOT_CONFIDENT)
            lines.append(f"**No confident answer** — {why}. For transparency, the model's (unreliable) top "
                         "guesses were:")
        elif "estimate" in t:
            lines.append(f"**Estimated age: {completed_years(t['estimate'])} years** — age group **{t['group']}** "
                         f"(probability {_pct(t['group_probability'])})")
        lines.append("\n| | probability |\n|---|---|")
        lines += [f"| {r.get('name', r['label'])} | {_pct(r['probability'])} |" for r in t.get("top_k", [])]
        if t.get("malignant"):
            lines.append(malignant_markdown(t["malignant"], unreliable=bool(t.get("abstained"))))
        healthy = "" if "estimate" in t else (" The model picks among its conditions for any photo it reads: it "
                                              "has no answer for healthy skin.")
        lines.append("\n<sub>Probabilities are calibrated: of all answers given with 80 %, about 80 % were right "
                     f"on the test set.{healthy}</sub>")
        parts.append("\n".join(lines))
    return "\n\n".join(parts)


def malignant_markdown(malignant: dict, *, unreliable: bool) -> str:
    """The summed probability of a model's cancer classes (:func:`skin.service.readout.read_out`'s
    ``malignant``), under its answers: the answer is one class, and the sum can be high when it is benign."""
    classes = ", ".join(malignant["classes"])
    caveat = ", as unreliable as the guesses above" if unreliable else ""
    return (f"\n**Cancer classes together: {_pct(malignant['probability'])}** ({classes}{caveat}). The answer "
            "above is the single most likely class; this adds up every class counted as cancer, so it can be "
            "high when that answer is benign. Whatever it says, a spot that is new, changing, bleeding or not "
            "healing should be seen by a doctor.")


def missed_cancers_markdown(missed: dict) -> str:
    """The card's share of cancers whose top answer was benign, per skin tone (lower is better)."""
    def cell(r: dict) -> str:
        if r["value"] is None:
            return "not measured"
        ci = "" if r["ci_low"] is None else f" ({r['ci_low']:.0%}–{r['ci_high']:.0%})"
        return f"{r['value']:.0%}{ci}"

    parts = [f"{_bucket_name(r)} {cell(r)}" for r in missed["rows"]]
    return ("\n**Cancers the single answer missed** (test photos of a cancer class answered with a benign class; "
            f"lower is better; intervals in brackets): {', '.join(parts)}; overall {cell(missed['overall'])}. "
            "This is why each answer also shows the cancer classes' summed probability.")


def quality_markdown(result: dict) -> str:
    """The photo-quality verdict with a tip per problem, and what was done to the file."""
    q = result.get("quality") or {}
    lines = []
    if q.get("ok", True):
        lines.append("✅ **Photo quality: OK**")
    else:
        lines.append("❌ **Photo quality problems** — the app does not answer on this photo:")
    for p in q.get("problems") or []:
        if isinstance(p, dict):
            tip = f" — *tip: {p['tip']}*" if p.get("tip") else ""
            lines.append(f"- {p.get('message', p.get('code'))}{tip}")
    notes = (result.get("image") or {}).get("notes") or []
    if notes:
        lines.append("\n**About your file:** " + "; ".join(notes) + ".")
    return "\n".join(lines)


def examples_markdown(configured: list[ExamplePhoto], available: list[ExamplePhoto]) -> str:
    """Licence notes of the example photos, or why there are none."""
    if available:
        return "Example photos (not stored in this app; read from the datasets): " + "; ".join(
            f"*{e.caption}* — {e.licence}" for e in available) + "."
    if configured:
        return ("No example photos on this machine: they are read from the datasets' folders at run time "
                f"(e.g. `{configured[0].path}`), because their licences do not allow shipping them with the app.")
    return ""


def _group_cell(r: dict) -> str:
    """One group of "Other groups measured": its value, interval where there is one, n, and a flag when the
    report called it too small to judge."""
    ci = f" [{r['ci_low']:.2f}–{r['ci_high']:.2f}]" if r.get("ci_low") is not None else ""
    return f"{r['group']}: {_fmt2(r['value'])}{ci} (n={r['n']}{', *thin data*' if r.get('small') else ''})"


def fairness_markdown(card: dict) -> str:
    """A fairness card (:func:`skin.service.cards.fairness_card`): warnings first, then the table per tone."""
    bucket = card.get("user_bucket")
    lines = [f"### How well does this model work for your skin tone? — {card['title']}"]
    if bucket:
        lines.append(f"Your photo's estimated skin tone: **{bucket}** (ITA, three buckets: light > {ITA_LIGHT_MIN:g}° "
                     f"≥ medium > {ITA_DARK_MAX:g}° ≥ dark; a rough estimate from a photo, not a measurement).")
    else:
        lines.append("Your skin tone could not be estimated from this photo (no skin found, or a greyscale photo).")
    if card.get("tone_agreement"):
        lines.append(f"<sub>{card['tone_agreement']}</sub>")
    for w in card.get("warnings", []):
        lines.append(f"\n> ⚠️ **{w}**")
    if card.get("measured"):
        better = "higher is better" if card["higher_is_better"] else "lower is better"
        confidence = any(r.get("confidence") for r in card["rows"])
        extra = " | answers' average confidence → share right |" if confidence else " |"
        lines.append(f"\n| skin tone | test images (n) | {card['metric_label']} ({better}) | 95 % CI{extra}")
        lines.append("|---|---|---|---|" + ("---|" if confidence else ""))
        for r in card["rows"]:
            name = _bucket_name(r)
            val = "not measured" if r["value"] is None else f"{r['value']:.2f}"
            ci = "–" if r["ci_low"] is None else f"{r['ci_low']:.2f}–{r['ci_high']:.2f}"
            flag = " (thin data)" if r["small"] and r["n"] else ""
            c = r.get("confidence")
            cell = (f" {c['mean_confidence']:.0%} → {c['accuracy']:.0%} |" if c else " – |") if confidence else ""
            lines.append(f"| {name} | {r['n']}{flag} | {val} | {ci} |{cell}")
        if confidence:
            lines.append("\n<sub>Confidence as the app answers (your photo alone, calibrated): when the two "
                         "percentages are close, the app's stated confidence can be taken at its word for "
                         "that skin tone.</sub>")
        if card.get("ci_coverage"):
            lines.append(f"\n<sub>{card['ci_coverage']}</sub>")
        if card.get("age_mix"):
            lines.append(f"\n<sub>{card['age_mix']}</sub>")
    if card.get("missed_cancers"):
        lines.append(missed_cancers_markdown(card["missed_cancers"]))
    if card.get("overall"):
        o = card["overall"]
        lines.append(f"\nOverall on the test set: {card['metric_label']} **{o['value']:.2f}** (n = {o.get('n')}).")
    if card.get("tta") and (card.get("overall") or card.get("measured")):
        lines.append("These figures average each test photo with its mirror images (flip test-time augmentation); "
                     "the app predicts on your photo alone, which scores slightly lower.")
    if card.get("other_groups"):
        lines.append("\n<details><summary>Other groups measured</summary>\n")
        lines.append(f"{card['metric_label']} per group, its 95 % interval in brackets; *thin data*: too few test "
                     "photos to judge the group.\n")
        for attr, rows in card["other_groups"].items():
            cells = ", ".join(_group_cell(r) for r in rows)
            lines.append(f"- **{attr.replace('_', ' ')}**: {cells}")
        lines.append("\n</details>")
    link = card.get("dataset_url")
    ds = f"[{card['dataset']}]({link})" if link else card["dataset"]
    lines.append(f"\n<sub>Training data: {ds} — licence: {card['dataset_licence']}. "
                 f"Model card: {card['model_card']}.</sub>")
    return "\n".join(lines)
