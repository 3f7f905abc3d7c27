"""The store's judgements as a ``judgements`` table (schemas.judgements), for emit and the admins' files."""

from __future__ import annotations

import pyarrow as pa

from annotation_ui.store.judgements import JudgementsMixin
from schemas import judgements as judgements_schema


class ExportsMixin(JudgementsMixin):
    """Judgements and adjudications in the dataset's judgements schema."""

    def export_judgements(self) -> pa.Table:
        """All judgements as a ``judgements`` table (schemas.judgements): the annotators' oldest
        first, then the admins' adjudications (role "adjudicator")."""
        columns = judgements_schema.SPEC.columns
        rows = [{**{name: row.get(name) for name in columns}, "role": "annotator"} for row in self.judgement_rows()]
        for row in self.adjudication_rows():
            decided_candidate = row["answer"] in (row["candidate_a"], row["candidate_b"])
            rows.append(
                {
                    "pair_id": row["pair_id"],
                    "annotator": row["admin"],
                    # A chosen candidate is stored as "left" with that candidate on the left.
                    "choice": "left" if decided_candidate else row["answer"],
                    "left_was": row["answer"] if decided_candidate else row["candidate_a"],
                    "description": row["note"],
                    "described_candidate": "",
                    "role": "adjudicator",
                    "ms_taken": 0,
                    "created_at": row["created_at"],
                }
            )
        return judgements_schema.SPEC.to_table(rows)


