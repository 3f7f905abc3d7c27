"""The admin report: throughput, per-annotator counts, speed and gold accuracy, agreement, the
review queue, recent descriptions, as HTML. Answers are shown as candidate ids with their IQA
role, never as screen sides. Every value that came from a person is escaped."""

from __future__ import annotations

import html
import math
from collections.abc import Mapping, Sequence
from typing import Any

from annotation_ui.agreement import summarize
from annotation_ui.review import answer_text
from annotation_ui.store import TaskMedia
from annotation_ui.viewer import task_html

RECENT_DESCRIPTIONS = 20


def _number(value: float, digits: int = 3) -> str:
    return "n/a" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.{digits}f}"


def _table(header: Sequence[str], rows: Sequence[Sequence[Any]], empty: str) -> str:
    if not rows:
        return f"<p>{html.escape(empty)}</p>"
    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in row) + "</tr>" for row in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _per_hour(rows: Sequence[Mapping[str, Any]]) -> dict[str, float]:
    """Judgements per hour of each annotator over their active span (first to last judgement,
    at least one hour, so a short burst is not extrapolated)."""
    stamps: dict[str, list[float]] = {}
    for row in rows:
        stamps.setdefault(row["annotator"], []).append(row["created_ts"])
    return {name: len(ts) / max(1.0, (max(ts) - min(ts)) / 3600.0) for name, ts in stamps.items()}


def render_review_queue(queue: Sequence[Mapping[str, Any]]) -> str:
    """The pairs waiting for an admin's decision (``review.disagreements``)."""
    rows = [
        (
            item["pair_id"],
            item["instance_id"],
            f"{item['candidate_a']} (IQA winner) vs {item['candidate_b']} (IQA loser)",
            "; ".join(f"{who}: {answer}" + (f" ({text})" if text else "") for who, answer, text in item["votes"]),
        )
        for item in queue
    ]
    return (
        f"<div class='admin-review'><h3>Review queue ({len(queue)})</h3>"
        + _table(["pair", "instance", "candidates", "votes"], rows, "No disagreements waiting.")
        + "</div>"
    )


def render_report(
    rows: Sequence[Mapping[str, Any]],
    counts: Mapping[str, int],
    annotators: Sequence[Mapping[str, Any]],
    now: float,
) -> str:
    """HTML for the admin tab from ``Store.judgement_rows()``, ``Store.counts()`` and
    ``Store.annotators()`` (everyone who logged in, judged or not)."""
    stats = summarize(rows)
    per_hour = _per_hour(rows)
    roles = {a["name"]: "admin" if a["is_admin"] else "annotator" for a in annotators}
    nobody = {"judgements": 0, "gold_seen": 0, "gold_accuracy": float("nan"), "median_ms": float("nan"),
              "reliability": float("nan")}
    last_hour_by = {name: sum(1 for r in rows if r["annotator"] == name and r["created_ts"] >= now - 3600) for name in roles}
    last_hour = sum(1 for r in rows if r["created_ts"] >= now - 3600)
    last_day = sum(1 for r in rows if r["created_ts"] >= now - 86400)
    per_annotator = [
        (
            name,
            roles.get(name, "unknown"),
            s["judgements"],
            last_hour_by.get(name, 0),
            _number(per_hour.get(name, float("nan")), 1),
            s["gold_seen"],
            _number(s["gold_accuracy"], 2),
            _number(s["reliability"], 2),
            _number(s["median_ms"] / 1000.0, 1),
        )
        for name, s in sorted({**dict.fromkeys(roles, nobody), **stats["per_annotator"]}.items())
    ]
    cohen = [(a, b, common, _number(kappa)) for (a, b), (kappa, common) in sorted(stats["cohen"].items())]
    recent = [
        (r["created_at"][:19], r["annotator"], r["pair_id"], answer_text(r), r.get("described_candidate") or "pair", r["description"])
        for r in reversed(rows)
        if r["description"]
    ][:RECENT_DESCRIPTIONS]
    recent_rows = "".join(
        f"<tr><td>{html.escape(t)}</td><td>{html.escape(a)}</td><td>{html.escape(p)}</td>"
        f"<td>{html.escape(c)}</td><td>{html.escape(about)}</td><td class='description'>{html.escape(d)}</td></tr>"
        for t, a, p, c, about, d in recent
    )
    recent_html = (
        f"<table><thead><tr><th>when (UTC)</th><th>annotator</th><th>pair</th><th>answer</th>"
        f"<th>about</th><th>description</th></tr></thead><tbody>{recent_rows}</tbody></table>"
        if recent
        else "<p>No descriptions yet.</p>"
    )
    labels = ", ".join(f"{html.escape(k)}: {v}" for k, v in sorted(stats["label_counts"].items())) or "none"
    return (
        "<div class='admin-report'>"
        "<h3>Progress</h3>"
        f"<p>{counts['tasks']} tasks, {counts['complete']} complete, {counts['leased']} on screen now; "
        f"{counts['judgements']} judgements ({last_hour} in the last hour, {last_day} in the last 24 hours).</p>"
        "<h3>Annotators</h3>"
        + _table(
            ["annotator", "role", "judgements", "last hour", "per active hour", "gold seen", "gold accuracy",
             "reliability (Dawid-Skene)", "median seconds"],
            per_annotator,
            "Nobody has logged in yet.",
        )
        + "<h3>Agreement</h3>"
        f"<p>Fleiss' kappa over pairs with two or more judgements: <b>{_number(stats['fleiss'])}</b></p>"
        + _table(["annotator", "annotator", "pairs in common", "Cohen's kappa"], cohen, "No two annotators share two pairs yet.")
        + "<h3>People vs IQA</h3>"
        f"<p>Where people picked a side, they agreed with the IQA winner in "
        f"<b>{_number(stats['iqa_agreement'] * 100 if stats['iqa_decided'] else float('nan'), 1)}%</b> "
        f"of {stats['iqa_decided']} judgements. Labels: {labels}.</p>"
        "<h3>Recent descriptions</h3>" + recent_html + "</div>"
    )


def render_review_pair(item: Mapping[str, Any] | None, media: TaskMedia | None) -> str:
    """One judged pair as the annotators saw it (both candidates, with flicker, zoom and outline
    from the same keys), the IQA winner on the left, then every vote with its description."""
    if item is None or media is None:
        return "<p class='review-empty'>No pair matches: change the filter, or wait for judgements.</p>"
    winner, loser = item["candidate_a"], item["candidate_b"]
    viewer = task_html(
        item["pair_id"], winner, media, prefix="review-", captions=(f" · {winner} (IQA winner)", f" · {loser} (IQA loser)")
    )
    votes = [
        (
            r["annotator"],
            answer_text(r),
            {winner: f"{winner} (IQA winner)", loser: f"{loser} (IQA loser)"}.get(r.get("described_candidate") or "", "pair"),
            r["description"],
            _number(r["ms_taken"] / 1000.0, 1),
        )
        for r in item["rows"]
    ]
    status = "settled by an admin" if item["settled"] else "no admin decision yet"
    return (
        f"<div class='review-viewer'>{viewer}</div><div class='review-votes'>"
        f"<p>{html.escape(item['pair_id'])} · {html.escape(item['instance_id'])} · {status}</p>"
        + _table(["annotator", "answer", "about", "description", "seconds"], votes, "No votes.")
        + "</div>"
    )
