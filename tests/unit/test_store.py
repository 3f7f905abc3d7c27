"""The task store on SQLite and on the PostgreSQL server at 127.0.0.1:5432 (database `test`)."""

from __future__ import annotations

import threading
import time
import uuid
from collections import Counter

import pytest
import sqlalchemy as sa

from annotation_ui.store import LeaseLost, PairBusy, Store, StoreError, TaskRecord, left_candidate
from schemas import judgements as judgements_schema

POSTGRES_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/test"


class FakeClock:
    def __init__(self) -> None:
        self.now = 1_700_000_000.0

    def __call__(self) -> float:
        return self.now


def _postgres_available() -> bool:
    try:
        with sa.create_engine(POSTGRES_URL).connect() as conn:
            conn.execute(sa.text("select 1"))
        return True
    except Exception:
        return False


@pytest.fixture(params=["sqlite", "postgresql"])
def open_store(request, tmp_path):
    """A function opening the (same) store again and again; everything is dropped afterwards."""
    if request.param == "postgresql":
        if not _postgres_available():
            pytest.skip(f"no PostgreSQL server at {POSTGRES_URL}")
        url, schema = POSTGRES_URL, f"store_test_{uuid.uuid4().hex[:12]}"
    else:
        url, schema = f"sqlite:///{tmp_path / 'annotations.db'}", None
    opened: list[Store] = []

    def make(clock=None, lease_ttl_s: float = 60.0) -> Store:
        store = Store(url, db_schema=schema, lease_ttl_s=lease_ttl_s, clock=clock or FakeClock())
        opened.append(store)
        return store

    yield make
    for store in opened:
        store.close()
    if schema:
        engine = sa.create_engine(url)
        with engine.begin() as conn:
            conn.execute(sa.text(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))
        engine.dispose()


def records(count: int, gold: set[int] = frozenset()) -> list[TaskRecord]:
    return [
        TaskRecord(
            pair_id=f"p{i:03d}",
            image_id=f"img{i // 4}",
            instance_id=f"img{i // 4}:{i % 4}",
            candidate_a=f"a{i}",
            candidate_b=f"b{i}",
            margin=i / 100,
            needs_review=False,
            gold_answer=f"a{i}" if i in gold else None,
            crop_a=b"A%d" % i,
            crop_b=b"B%d" % i,
            mask=b"M",
            context=b"C",
        )
        for i in range(count)
    ]


def drain(store: Store, annotator: str, choice: str = "left") -> list[str]:
    judged = []
    while (claim := store.claim(annotator)) is not None:
        store.submit(annotator, claim.pair_id, choice)
        judged.append(claim.pair_id)
    return judged


def test_claim_submit_export_round_trip(open_store):
    store = open_store()
    assert store.import_tasks(records(3), overlap_k=1) == 3
    claim = store.claim("ann")
    assert claim.pair_id == "p000"  # import order is serving order
    assert claim.left_was == left_candidate("p000", "ann", "a0", "b0")
    assert {claim.left_was, claim.right_was} == {"a0", "b0"}
    store.submit("ann", claim.pair_id, "right", "the <b>sky</b> is smeared", ms_taken=1234)
    table = store.export_judgements()
    judgements_schema.SPEC.validate(table)
    [row] = table.to_pylist()
    assert row["pair_id"] == "p000" and row["annotator"] == "ann" and row["choice"] == "right"
    assert row["left_was"] == claim.left_was
    assert row["description"] == "the <b>sky</b> is smeared" and row["ms_taken"] == 1234
    media = store.media("p000")
    assert (media.crop_a, media.crop_b, media.candidate_a) == (b"A0", b"B0", "a0")


def test_reimport_keeps_existing_tasks_and_bad_choice_is_rejected(open_store):
    store = open_store()
    store.import_tasks(records(2), overlap_k=1)
    assert store.import_tasks(records(4), overlap_k=1) == 2
    assert store.counts()["tasks"] == 4
    claim = store.claim("ann")
    with pytest.raises(ValueError, match="'middle'.*not one of"):
        store.submit("ann", claim.pair_id, "middle")
    with pytest.raises(ValueError, match="overlap_k"):
        store.import_tasks(records(1), overlap_k=0)


def test_left_right_order_is_randomised_per_annotator():
    sides = {left_candidate(f"p{i}", "ann", "a", "b") for i in range(40)}
    assert sides == {"a", "b"}
    assert left_candidate("p1", "ann", "a", "b") == left_candidate("p1", "ann", "a", "b")


def test_overlap_k_distinct_annotators_and_never_twice(open_store):
    store = open_store()
    store.import_tasks(records(5), overlap_k=2)
    first = drain(store, "ann1")
    assert sorted(first) == [f"p{i:03d}" for i in range(5)]  # each pair once, never twice
    drain(store, "ann2")
    assert drain(store, "ann3") == []  # every pair has its two annotators
    per_pair = Counter(r["pair_id"] for r in store.export_judgements().to_pylist())
    assert set(per_pair.values()) == {2}
    assert store.counts()["complete"] == 5
    assert store.progress("ann3").queue_size == 0


def test_gold_items_go_to_every_annotator(open_store):
    store = open_store()
    store.import_tasks(records(3, gold={1}), overlap_k=1)
    drain(store, "ann1")
    assert drain(store, "ann2") == ["p001"]
    assert drain(store, "ann3") == ["p001"]


def test_a_leased_pair_is_not_given_to_anyone_else_until_the_lease_expires(open_store):
    clock = FakeClock()
    store = open_store(clock=clock, lease_ttl_s=60)
    store.import_tasks(records(1), overlap_k=2)
    claim = store.claim("ann1")
    assert store.claim("ann2") is None
    assert store.claim("ann1").pair_id == claim.pair_id  # asking again returns the live lease
    clock.now += 61
    taken = store.claim("ann2")
    assert taken.pair_id == claim.pair_id
    with pytest.raises(LeaseLost, match="not leased to ann1"):
        store.submit("ann1", claim.pair_id, "left")
    store.submit("ann2", taken.pair_id, "tie")
    assert [r["annotator"] for r in store.export_judgements().to_pylist()] == ["ann2"]


def test_an_expired_lease_still_counts_while_nobody_took_the_pair(open_store):
    clock = FakeClock()
    store = open_store(clock=clock, lease_ttl_s=60)
    store.import_tasks(records(1), overlap_k=1)
    claim = store.claim("ann1")
    clock.now += 3600
    store.submit("ann1", claim.pair_id, "both_bad")
    assert store.counts()["judgements"] == 1
    with pytest.raises(LeaseLost):
        store.submit("ann1", claim.pair_id, "both_bad")  # a double click records nothing twice
    assert store.counts()["judgements"] == 1


def test_leases_belong_to_pages_and_a_heartbeat_keeps_one_alive(open_store):
    clock = FakeClock()
    store = open_store(clock=clock, lease_ttl_s=30)
    store.import_tasks(records(3), overlap_k=1)
    first = store.claim("ann1", "tab1")
    second = store.claim("ann1", "tab2")  # the same annotator in a second tab: another pair
    assert second.pair_id != first.pair_id
    assert store.claim("ann1", "tab1").pair_id == first.pair_id  # each page keeps its own
    assert store.release("ann1", session="tab2") == 1  # closing tab2 gives back tab2's pair only
    assert store.leases() == {first.pair_id: "ann1"}
    for _ in range(4):  # a visible page beats every 10 s: its pair never expires
        clock.now += 10
        assert store.heartbeat("ann1", "tab1") == first.pair_id
    assert store.claim("ann2", "x").pair_id != first.pair_id
    assert store.heartbeat("ann1", "tab2") is None  # a page without a pair
    clock.now += 31  # tab1 went silent (closed, crashed): its pair is free again
    assert first.pair_id not in store.leases()
    store.release("ann2", session="x")
    taken = store.claim("ann3", "y")
    assert taken.pair_id == first.pair_id and store.heartbeat("ann1", "tab1") is None


def test_a_judgement_stores_the_side_as_displayed(open_store):
    store = open_store()
    store.import_tasks(records(2), overlap_k=1)
    plain, flickered = store.claim("ann1", "a"), store.claim("ann1", "b")
    store.submit("ann1", plain.pair_id, "left", "crisp", about="left")
    store.submit("ann1", flickered.pair_id, "left", "crisp", about="left", swapped=True)
    rows = {r["pair_id"]: r for r in store.export_judgements().to_pylist()}
    assert (rows[plain.pair_id]["left_was"], rows[plain.pair_id]["described_candidate"]) == (plain.left_was,) * 2
    # The flicker showed the right candidate in the left box: "left" prefers that one.
    assert (rows[flickered.pair_id]["left_was"], rows[flickered.pair_id]["described_candidate"]) == (flickered.right_was,) * 2


def test_undo_reopens_the_last_judgement_for_editing(open_store):
    store = open_store()
    store.import_tasks(records(3), overlap_k=1)
    assert store.undo_last("ann") is None
    first = store.claim("ann")
    store.submit("ann", first.pair_id, "left", "first look")
    second = store.claim("ann")
    undone = store.undo_last("ann")
    assert undone.pair_id == first.pair_id and undone.left_was == first.left_was
    assert (undone.previous_choice, undone.previous_description) == ("left", "first look")
    assert store.counts()["judgements"] == 1  # kept until the new judgement replaces it
    reloaded = store.claim("ann")  # the edited pair is the current task, still shown as an edit
    assert (reloaded.pair_id, reloaded.previous_choice) == (first.pair_id, "left")
    store.submit("ann", first.pair_id, "right", "second look")
    # The pair that was on screen before the undo went back to the queue and comes next.
    assert store.claim("ann").pair_id == second.pair_id
    [row] = store.export_judgements().to_pylist()
    assert (row["choice"], row["description"]) == ("right", "second look")
    assert store.counts()["complete"] == 1  # an edit is not a second judgement


def test_closing_the_tab_after_an_undo_keeps_the_judgement(open_store):
    store = open_store()
    store.import_tasks(records(2), overlap_k=1)
    claim = store.claim("ann")
    store.submit("ann", claim.pair_id, "tie", "same to me")
    store.undo_last("ann")
    assert store.release("ann") == 1  # the tab closed (or the user logged out)
    [row] = store.export_judgements().to_pylist()
    assert (row["pair_id"], row["choice"], row["description"]) == (claim.pair_id, "tie", "same to me")
    assert store.counts()["leased"] == 0
    assert store.claim("ann").pair_id != claim.pair_id  # judged: not given to them again


def test_cant_tell_is_a_stored_answer_of_its_own(open_store):
    store = open_store()
    store.import_tasks(records(2), overlap_k=1)
    claim = store.claim("ann")
    store.submit("ann", claim.pair_id, "cant_tell", ms_taken=900)
    [row] = store.export_judgements().to_pylist()
    assert row["choice"] == "cant_tell" and row["role"] == "annotator"
    assert store.counts()["complete"] == 1  # it counts as a judgement of the pair
    judgements_schema.SPEC.validate(store.export_judgements())


def test_skip_releases_the_lease_and_hides_the_pair_for_the_session(open_store):
    store = open_store()
    store.import_tasks(records(2), overlap_k=1)
    first = store.claim("ann", session="tab1")
    store.skip("ann", first.pair_id, session="tab1")
    assert store.counts()["leased"] == 0  # released at once
    assert store.claim("other").pair_id == first.pair_id  # back in the queue for everyone else
    store.release("other")
    second = store.claim("ann", session="tab1")
    assert second.pair_id != first.pair_id  # not shown to ann again in this session
    store.submit("ann", second.pair_id, "left")
    assert store.claim("ann", session="tab1") is None
    assert store.claim("ann", session="tab2").pair_id == first.pair_id  # a new session may see it
    with pytest.raises(LeaseLost, match="nothing to skip"):
        store.skip("ann", second.pair_id, session="tab2")
    assert store.counts()["judgements"] == 1


def test_release_gives_the_pair_to_the_next_annotator_at_once(open_store):
    store = open_store(lease_ttl_s=3600)
    store.import_tasks(records(1), overlap_k=2)
    claim = store.claim("ann1")
    assert store.claim("ann2") is None
    assert store.leases() == {claim.pair_id: "ann1"}
    assert store.release("ann1", pair_id="elsewhere") == 0
    assert store.release("ann1") == 1
    assert store.leases() == {}
    assert store.claim("ann2").pair_id == claim.pair_id
    with pytest.raises(LeaseLost):
        store.submit("ann1", claim.pair_id, "left")


def test_descriptions_are_stored_against_the_candidate_not_the_side(open_store):
    store = open_store()
    store.import_tasks(records(3), overlap_k=1)
    for about in ("left", "right", None):
        claim = store.claim("ann")
        store.submit("ann", claim.pair_id, "left", f"about {about}", about=about)
    rows = store.export_judgements().to_pylist()
    lefts = [r["left_was"] for r in rows]
    rights = [{f"a{i}", f"b{i}"} - {left} for i, left in enumerate(lefts)]
    assert rows[0]["described_candidate"] == lefts[0]
    assert {rows[1]["described_candidate"]} == rights[1]
    assert rows[2]["described_candidate"] == ""
    claim = store.claim("ann")
    assert claim is None
    store.import_tasks(records(4), overlap_k=1)
    claim = store.claim("ann")
    with pytest.raises(ValueError, match="about='up'"):
        store.submit("ann", claim.pair_id, "left", "text", about="up")


def test_adjudication_overrides_and_is_exported_as_such(open_store):
    store = open_store()
    store.import_tasks(records(1), overlap_k=2)
    for annotator, choice in (("ann1", "left"), ("ann2", "right")):
        store.submit(annotator, store.claim(annotator).pair_id, choice)
    with pytest.raises(StoreError, match="expected one of"):
        store.adjudicate("boss", "p000", "c9")
    store.adjudicate("boss", "p000", "b0", "the fur on b0 is real")
    store.adjudicate("boss", "p000", "a0", "on second look, a0")
    rows = store.export_judgements().to_pylist()
    assert [r["role"] for r in rows] == ["annotator", "annotator", "adjudicator"]
    adjudication = rows[-1]
    assert (adjudication["annotator"], adjudication["choice"], adjudication["left_was"]) == ("boss", "left", "a0")
    assert adjudication["description"] == "on second look, a0"
    judgements_schema.SPEC.validate(store.export_judgements())


def test_sessions_and_secrets_survive_reopening(open_store):
    clock = FakeClock()
    store = open_store(clock=clock)
    secret = store.secret("cookie", lambda: "s3cr3t")
    store.save_session("tok", "ann")
    store.close()
    reopened = open_store(clock=clock)
    assert reopened.secret("cookie", lambda: "other") == secret == "s3cr3t"
    assert reopened.session_user("tok", max_age_s=60) == "ann"
    assert reopened.sessions() == {"tok": "ann"}
    clock.now += 61
    assert reopened.session_user("tok", max_age_s=60) is None
    reopened.delete_session("tok")
    assert reopened.sessions() == {}


def test_a_store_from_before_described_candidate_gets_the_column(tmp_path):
    url = f"sqlite:///{tmp_path / 'old.db'}"
    engine = sa.create_engine(url)
    with engine.begin() as conn:
        conn.exec_driver_sql(
            "CREATE TABLE judgements (id INTEGER PRIMARY KEY, pair_id VARCHAR(64), annotator VARCHAR(128), "
            "choice VARCHAR(16), left_was VARCHAR(64), description TEXT, ms_taken BIGINT, "
            "created_at VARCHAR(40), created_ts FLOAT)"
        )
    engine.dispose()
    store = Store(url)
    store.import_tasks(records(1), overlap_k=1)
    store.submit("ann", store.claim("ann").pair_id, "left", "kept", about="left")
    assert store.export_judgements().to_pylist()[0]["described_candidate"] in ("a0", "b0")
    store.close()


def test_undo_refuses_while_someone_else_judges_the_pair(open_store):
    store = open_store()
    store.import_tasks(records(1), overlap_k=2)
    claim = store.claim("ann1")
    store.submit("ann1", claim.pair_id, "left")
    store.claim("ann2")
    with pytest.raises(PairBusy, match="someone else"):
        store.undo_last("ann1")


def test_closing_and_reopening_mid_session_loses_nothing(open_store):
    clock = FakeClock()
    store = open_store(clock=clock)
    store.import_tasks(records(4), overlap_k=1)
    done = store.claim("ann")
    store.submit("ann", done.pair_id, "tie", "ok")
    current = store.claim("ann")
    store.close()
    reopened = open_store(clock=clock)
    assert reopened.claim("ann") == current  # the lease survived, same sides
    assert reopened.export_judgements().to_pylist()[0]["pair_id"] == done.pair_id
    reopened.submit("ann", current.pair_id, "right")
    assert reopened.counts() == {"tasks": 4, "complete": 2, "leased": 0, "judgements": 2}


def test_annotators_are_registered_with_their_role(open_store):
    store = open_store()
    store.register_annotator("ann")
    store.register_annotator("boss", is_admin=True)
    store.register_annotator("ann", is_admin=True)  # promoted in the users file since
    assert [(a["name"], a["is_admin"]) for a in store.annotators()] == [("ann", True), ("boss", True)]


def test_progress_counts_today_and_the_queue(open_store):
    clock = FakeClock()
    store = open_store(clock=clock)
    store.import_tasks(records(4), overlap_k=1)
    store.submit("ann", store.claim("ann").pair_id, "left")
    assert store.progress("ann").done_today == 1
    assert store.progress("ann").queue_size == 3
    store.claim("other")  # leased by someone else: not in ann's queue
    assert store.progress("ann").queue_size == 2
    clock.now += 86400
    assert store.progress("ann").done_today == 0


def test_fifty_annotators_claiming_and_submitting_concurrently(open_store):
    """No pair with two annotators at once, no lost or duplicate judgement, k respected.

    Nothing here may depend on how fast the machine is: a lease that expired while its thread
    waited for the CPU (the cause of this test's failures on loaded CI machines, with the 60 s
    lease of the other tests) would hand a pair to a second annotator and refuse the first one's
    submit, so the lease outlasts any run; and a thread waits for the others' last leases until
    every slot is filled, not for a fixed number of tries.
    """
    store = open_store(clock=time.time, lease_ttl_s=24 * 3600.0)
    pairs, k, threads = 40, 3, 50
    store.import_tasks(records(pairs), overlap_k=k)
    holders: dict[str, str] = {}
    guard = threading.Lock()
    violations: list[str] = []
    submitted: list[tuple[str, str]] = []
    errors: list[BaseException] = []
    start = threading.Barrier(threads)

    def next_claim(name: str):
        # None can mean "the last open slots are leased by others right now": an annotator who
        # reloads a moment later gets them once those are submitted (leases never expire here,
        # so they are). Ask again until every slot is filled.
        while (claim := store.claim(name)) is None and store.counts()["judgements"] < pairs * k:
            time.sleep(0.02)  # leave the write lock to the submitters
        return claim

    def annotate(name: str) -> None:
        try:
            start.wait()
            while (claim := next_claim(name)) is not None:
                with guard:
                    if claim.pair_id in holders:
                        violations.append(f"{claim.pair_id}: {holders[claim.pair_id]} and {name}")
                    holders[claim.pair_id] = name
                assert store.media(claim.pair_id).crop_a  # looking at the task takes a round trip
                with guard:  # let go before submitting: the lease stays until the submit commits
                    del holders[claim.pair_id]
                store.submit(name, claim.pair_id, "left")
                with guard:
                    submitted.append((claim.pair_id, name))
        except BaseException as err:  # reported below, with the thread's name
            errors.append(err)

    workers = [threading.Thread(target=annotate, args=(f"ann{i:02d}",)) for i in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    assert not errors, errors
    assert not violations
    rows = store.export_judgements().to_pylist()
    assert sorted((r["pair_id"], r["annotator"]) for r in rows) == sorted(submitted)  # nothing lost
    assert len(set(submitted)) == len(submitted) == pairs * k  # nothing twice, every slot filled
    assert set(Counter(r["pair_id"] for r in rows).values()) == {k}


def test_export_files_round_trip(open_store, tmp_path):
    import csv
    import json

    from annotation_ui.export import COLUMNS, write_exports

    store = open_store()
    store.import_tasks(records(3), overlap_k=2)
    for annotator, choice in (("ann1", "left"), ("ann2", "cant_tell")):
        claim = store.claim(annotator)
        store.submit(annotator, claim.pair_id, choice, 'a "quoted", multi\nline note', ms_taken=700, about="right")
    store.adjudicate("boss", "p000", "b0", "settled")
    csv_path, jsonl_path = write_exports(store, tmp_path / "out")
    stored = store.export_judgements().to_pylist()
    from_csv = list(csv.DictReader(csv_path.open(encoding="utf-8", newline="")))
    from_jsonl = [json.loads(line) for line in jsonl_path.read_text(encoding="utf-8").splitlines()]
    assert len(stored) == len(from_csv) == len(from_jsonl) == 3
    assert list(from_csv[0]) == list(COLUMNS)
    for row, csv_row, json_row in zip(stored, from_csv, from_jsonl):
        assert {k: json_row[k] for k in row} == row
        assert {k: csv_row[k] for k in row} == {k: str(v) for k, v in row.items()}
    left_was = stored[0]["left_was"]
    assert from_jsonl[0]["preferred_candidate"] == left_was  # "left" = the candidate shown left
    assert from_jsonl[1]["preferred_candidate"] == ""  # can't tell prefers nothing
    assert (from_jsonl[2]["role"], from_jsonl[2]["preferred_candidate"]) == ("adjudicator", "b0")
    assert from_jsonl[0]["iqa_winner"] == "a0" and from_jsonl[0]["instance_id"] == "img0:0"
