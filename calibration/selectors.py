"""Reads that span apps: judge labels, human consensus and queries as numpy arrays, and agreement
between any two labellers (judge run vs humans, run vs run, human vs human) on what both labelled.

Two paths, same results. On PostgreSQL the joins and grouping run in the database: agreement of a
run with humans is one query returning confusion counts per (query, judge value, human consensus),
which the agreement service expands into paired arrays in numpy (a million judgments stay in the
database; only the matched pairs' counts come back), and the array loaders get each column as one
bytea that numpy reads in place. On other databases (SQLite in development) the same arrays come
from the ORM and numpy does the pairing. tests/calibration/test_selectors_scale.py checks that both
paths agree exactly; bench/README_calibration.md has the figures at 1M judgments.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
from django.db import connection, transaction
from django.db.models import Count, Max

from judges.models import JudgeRun, Judgment
from policy.models import PolicyVersion
from review.models import HumanLabel
from sage_stats import DimensionAgreement, consensus_by_item, dimension_agreement, krippendorff_alpha
from traffic.models import Item, SampleItem

from .models import GoldLabeller


def use_sql_path() -> bool:
    """True when agreement is computed in the database (PostgreSQL); tests may patch this."""
    return connection.vendor == "postgresql"


def _int_columns(sql: str, params: list, ncols: int) -> np.ndarray:
    """(rows, ncols) int64 array of a query whose columns are all non-null integers, rows sorted
    lexicographically (callers need no ORDER BY: numpy sorts faster than a spilled database sort).

    PostgreSQL: each column comes back as one bytea of big-endian int8s (`string_agg(int8send(c))`),
    read with `np.frombuffer`: one row and no Python object per value, where a cursor would build a
    tuple per row and a binary COPY would hand Python one message per row. Elsewhere: fetch all.
    """
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            names = ", ".join(f"c{c}" for c in range(ncols))
            aggregates = ", ".join(f"count(c{c}), string_agg(int8send(c{c}::bigint), ''::bytea)" for c in range(ncols))
            # For this statement only (set_config(..., true) is transaction-local, and the old values
            # are put back so an enclosing transaction is left as it was): no JIT, whose compiling
            # costs more (~0.4 s at 1M rows) than it saves; no nested loops, which the planner picks
            # on freshly written tables it has no statistics for yet (a just-imported run), and
            # which turn a join of two runs into minutes. Hash joins are right at every size here.
            with transaction.atomic(using=connection.alias):
                cursor.execute("SELECT current_setting('jit'), current_setting('enable_nestloop'), "
                               "set_config('jit', 'off', true), set_config('enable_nestloop', 'off', true)")
                jit, nestloop, *_ = cursor.fetchone()
                cursor.execute(f"SELECT count(*), {aggregates} FROM ({sql}) AS t({names})", params)
                total, *columns = cursor.fetchone()
                cursor.execute("SELECT set_config('jit', %s, true), set_config('enable_nestloop', %s, true)",
                               [jit, nestloop])
            if any(n != total for n in columns[0::2]):
                raise ValueError("expected non-null integer columns")
            if total == 0:
                return np.zeros((0, ncols), dtype=np.int64)
            rows = np.column_stack([np.frombuffer(data, dtype=">i8").astype(np.int64) for data in columns[1::2]])
        else:
            cursor.execute(sql, params)
            rows = np.array(cursor.fetchall(), dtype=np.int64).reshape(-1, ncols)
    return rows[np.lexsort(rows.T[::-1])] if len(rows) > 1 else rows


def _id_list(ids: Iterable[int]) -> list[int]:
    return np.asarray(ids if isinstance(ids, np.ndarray) else list(ids), dtype=np.int64).tolist()


def _table(model) -> str:
    return connection.ops.quote_name(model._meta.db_table)


def _judgment_values_sql(run: JudgeRun, dimension: str) -> tuple[str, list]:
    """(item_id, value) of a run's successful judgments that have the dimension (PostgreSQL)."""
    return (f"SELECT item_id::bigint AS item_id, (labels ->> %s)::bigint AS value FROM {_table(Judgment)} "
            f"WHERE run_id = %s AND status = %s AND labels ? %s", [dimension, run.pk, Judgment.Status.OK, dimension])


def gold_labeller_ids() -> list[int]:
    """The accounts whose labels are the consensus where they labelled (sage_stats.consensus)."""
    return sorted(GoldLabeller.objects.values_list("user_id", flat=True))


def _consensus_sql(dimension: str, item_ids: list[int] | None, *, reviewer_ids: list[int] | None = None,
                   exclude_reviewers: list[int] | None = None) -> tuple[str, list]:
    """(item_id, value, n) per item: the human consensus and the number of labels it counted (PostgreSQL).

    The same rule as sage_stats.consensus (tests check the two agree): gold labels alone where an item
    has one, then floor(percentile_cont(0.5)) — the midpoint of the two middle labels, rounded down.
    """
    where, where_params = ["is_latest", "labels ? %s"], [dimension]
    if item_ids is not None:
        where.append("item_id = ANY(%s)")
        where_params.append(item_ids)
    if reviewer_ids is not None:
        where.append("reviewer_id = ANY(%s)")
        where_params.append(reviewer_ids)
    if exclude_reviewers:
        where.append("NOT (reviewer_id = ANY(%s))")
        where_params.append(exclude_reviewers)
    gold = gold_labeller_ids()
    select_params: list = [dimension]
    labels = "SELECT item_id, (labels ->> %s)::bigint AS v"
    if gold:
        labels += ", reviewer_id = ANY(%s) AS gold"
        select_params.append(gold)
    labels += f" FROM {_table(HumanLabel)} WHERE {' AND '.join(where)}"
    if gold:
        labels = (f"SELECT item_id, v FROM (SELECT item_id, v, gold, bool_or(gold) OVER (PARTITION BY item_id) "
                  f"AS any_gold FROM ({labels}) AS l) AS w WHERE gold OR NOT any_gold")
    return (f"SELECT item_id::bigint AS item_id, floor(percentile_cont(0.5) WITHIN GROUP (ORDER BY v))::bigint "
            f"AS value, count(*)::bigint AS n FROM ({labels}) AS c GROUP BY item_id", [*select_params, *where_params])


def paired_counts_sql(sql_a: str, params_a: list, sql_b: str, params_b: list) -> np.ndarray:
    """(query id, value A, value B, count) rows for the items both (item_id, value) queries return,
    grouped in the database."""
    sql = (f"SELECT i.query_id::bigint, a.value, b.value, count(*)::bigint FROM ({sql_a}) AS a "
           f"JOIN ({sql_b}) AS b ON b.item_id = a.item_id JOIN {_table(Item)} AS i ON i.id = a.item_id "
           f"GROUP BY 1, 2, 3")
    return _int_columns(sql, [*params_a, *params_b], 4)


def agreement_from_counts(*, dimension: str, counts: np.ndarray, values: list[int], n_resamples: int = 1000,
                          seed: int = 0) -> DimensionAgreement:
    """`dimension_agreement` from (query, a, b, count) rows: the rows are expanded back into paired
    per-item arrays (a few MB at 1M items, milliseconds), so point estimates still come from
    scikit-learn and krippendorff and the per-query bootstrap sees the same confusion matrices."""
    counts = np.asarray(counts, dtype=np.int64).reshape(-1, 4)
    repeat = counts[:, 3]
    return dimension_agreement(dimension=dimension, a=np.repeat(counts[:, 1], repeat), b=np.repeat(counts[:, 2], repeat),
                               groups=np.repeat(counts[:, 0], repeat), values=values, n_resamples=n_resamples, seed=seed)


def run_labels(run: JudgeRun, dimension: str) -> tuple[np.ndarray, np.ndarray]:
    """(item ids, labels) of a run's successful judgments for one dimension, sorted by item id."""
    if use_sql_path():
        sql, params = _judgment_values_sql(run, dimension)
        rows = _int_columns(sql, params, 2)
        return rows[:, 0], rows[:, 1]
    rows = np.array(
        list(Judgment.objects.filter(run=run, status=Judgment.Status.OK, **{f"labels__{dimension}__isnull": False})
             .order_by("item_id").values_list("item_id", f"labels__{dimension}")),
        dtype=np.int64,
    ).reshape(-1, 2)
    return rows[:, 0], rows[:, 1]


def human_consensus(item_ids: Iterable[int] | None, dimension: str, *, reviewer_ids: Iterable[int] | None = None,
                    exclude_reviewers: Iterable[int] = ()) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(item ids, consensus label, number of labels counted) from the latest human labels, by the
    rule of sage_stats.consensus (CONSENSUS_RULE): median, halfway rounds down, gold labels win."""
    reviewers = None if reviewer_ids is None else [int(r) for r in reviewer_ids]
    exclude = [int(r) for r in exclude_reviewers]
    if use_sql_path():
        sql, params = _consensus_sql(dimension, None if item_ids is None else _id_list(item_ids),
                                     reviewer_ids=reviewers, exclude_reviewers=exclude)
        rows = _int_columns(sql, params, 3)
        return rows[:, 0], rows[:, 1], rows[:, 2]
    qs = HumanLabel.objects.filter(is_latest=True, **{f"labels__{dimension}__isnull": False})
    if item_ids is not None:
        qs = qs.filter(item_id__in=_id_list(item_ids))
    if reviewers is not None:
        qs = qs.filter(reviewer_id__in=reviewers)
    if exclude:
        qs = qs.exclude(reviewer_id__in=exclude)
    rows = np.array(list(qs.values_list("item_id", "reviewer_id", f"labels__{dimension}")),
                    dtype=np.int64).reshape(-1, 3)
    gold = np.isin(rows[:, 1], gold_labeller_ids())
    return consensus_by_item(rows[:, 0], rows[:, 2], gold)


def query_ids_for(item_ids: np.ndarray) -> np.ndarray:
    item_ids = np.asarray(item_ids, dtype=np.int64)
    if use_sql_path():
        if item_ids.size == 0:
            return np.zeros(0, dtype=np.int64)
        rows = _int_columns(f"SELECT id::bigint, query_id::bigint FROM {_table(Item)} WHERE id = ANY(%s)",
                            [np.unique(item_ids).tolist()], 2)
        at = np.searchsorted(rows[:, 0], item_ids)
        if at.size and (at.max() >= len(rows) or not np.array_equal(rows[at, 0], item_ids)):
            raise KeyError("unknown item id")
        return rows[at, 1]
    mapping = dict(Item.objects.filter(pk__in=item_ids.tolist()).values_list("pk", "query_id"))
    return np.array([mapping[i] for i in item_ids.tolist()], dtype=np.int64)


def run_paired_with_humans(run: JudgeRun, dimension: str) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(item ids, judge labels, human consensus, number of humans) on the items both labelled."""
    j_ids, j_vals = run_labels(run, dimension)
    h_ids, h_vals, counts = human_consensus(j_ids, dimension)
    common, ia, ib = np.intersect1d(j_ids, h_ids, assume_unique=True, return_indices=True)
    return common, j_vals[ia], h_vals[ib], counts[ib]


def labels_token() -> str:
    """Changes whenever the human side of an agreement would: a human label added or corrected (labels
    are never updated in place, so the highest id says it all, read from the primary-key index) or the
    gold labellers changed."""
    last_label = HumanLabel.objects.aggregate(last=Max("id"))["last"] or 0
    gold = GoldLabeller.objects.aggregate(n=Count("pk"), last=Max("pk"))
    return f"{last_label}.{gold['n']}-{gold['last'] or 0}"


def snapshot_token(run: JudgeRun) -> str:
    """Changes whenever a stored agreement of `run` would: the human labels (`labels_token`) or the
    run's judgments (a resumed run)."""
    return f"{labels_token()}.{run.status}-{run.done_items}-{run.error_items}"


def snapshot_fields(result: DimensionAgreement, token: str) -> dict:
    """An AgreementSnapshot's fields for one dimension's agreement (stored by the service, or shown
    unsaved by a page that found the stored one stale)."""
    return {"labels_token": token, "n": result.n, "n_queries": result.n_queries, "estimates": result.estimates,
            "ci": {k: list(v) if v else None for k, v in result.ci.items()}, "confusion": result.confusion,
            "values": result.values, "reason": result.reason or "", "ci_method": result.ci_method}


def _paired(ids_a: np.ndarray, a: np.ndarray, ids_b: np.ndarray, b: np.ndarray):
    common, ia, ib = np.intersect1d(ids_a, ids_b, assume_unique=True, return_indices=True)
    return common, a[ia], b[ib]


def run_vs_humans_counts(run: JudgeRun, dimension: str, item_ids: Iterable[int] | None = None) -> np.ndarray:
    """(query id, judge value, human consensus, count) rows for one dimension, grouped in PostgreSQL.

    The run's judgments are hash-joined to the per-item consensus (the smaller side) and to their
    items; the JSON label is read only for the matched rows (the OFFSET 0 fence keeps the planner
    from pushing the key test down into the scan of every judgment).
    """
    ids = None if item_ids is None else _id_list(item_ids)
    consensus, consensus_params = _consensus_sql(dimension, ids)
    sql = (f"SELECT query_id::bigint, (labels ->> %s)::bigint, value::bigint, count(*)::bigint FROM ("
           f"SELECT i.query_id, j.labels, h.value FROM {_table(Judgment)} AS j "
           f"JOIN ({consensus}) AS h ON h.item_id = j.item_id JOIN {_table(Item)} AS i ON i.id = j.item_id "
           f"WHERE j.run_id = %s AND j.status = %s OFFSET 0) AS matched "
           f"WHERE labels ? %s GROUP BY 1, 2, 3")
    return _int_columns(sql, [dimension, *consensus_params, run.pk, Judgment.Status.OK, dimension], 4)


def agreement_run_vs_humans(run: JudgeRun, *, dimensions: list[str] | None = None, n_resamples: int = 1000,
                            item_ids: Iterable[int] | None = None) -> list[DimensionAgreement]:
    """Judge (A) against the human consensus (B), per dimension of the run's rubric."""
    rubric = run.judge_version.policy_version.parsed_rubric()
    item_ids = None if item_ids is None else list(item_ids)
    results = []
    for dim in rubric.dimensions:
        if dimensions is not None and dim.key not in dimensions:
            continue
        if use_sql_path():
            results.append(agreement_from_counts(dimension=dim.key, counts=run_vs_humans_counts(run, dim.key, item_ids),
                                                 values=dim.values, n_resamples=n_resamples))
            continue
        j_ids, j_vals = run_labels(run, dim.key)
        h_ids, h_vals, _ = human_consensus(j_ids if item_ids is None else item_ids, dim.key)
        common, a, b = _paired(j_ids, j_vals, h_ids, h_vals)
        results.append(dimension_agreement(dimension=dim.key, a=a, b=b, groups=query_ids_for(common),
                                           values=dim.values, n_resamples=n_resamples))
    return results


def agreement_run_vs_run(run_a: JudgeRun, run_b: JudgeRun, *, n_resamples: int = 1000) -> list[DimensionAgreement]:
    """Two judges (e.g. student vs teacher) on the dimensions both rubrics share."""
    rubric_a = run_a.judge_version.policy_version.parsed_rubric()
    rubric_b = run_b.judge_version.policy_version.parsed_rubric()
    results = []
    for dim in rubric_a.dimensions:
        other = rubric_b.dimension(dim.key)
        if other is None or other.values != dim.values:
            continue
        if use_sql_path():
            counts = paired_counts_sql(*_judgment_values_sql(run_a, dim.key), *_judgment_values_sql(run_b, dim.key))
            results.append(agreement_from_counts(dimension=dim.key, counts=counts, values=dim.values,
                                                 n_resamples=n_resamples))
            continue
        ids_a, a = run_labels(run_a, dim.key)
        ids_b, b = run_labels(run_b, dim.key)
        common, a, b = _paired(ids_a, a, ids_b, b)
        results.append(dimension_agreement(dimension=dim.key, a=a, b=b, groups=query_ids_for(common),
                                           values=dim.values, n_resamples=n_resamples))
    return results


CEILING_RULE = ("the latest label of every person on each item (any queue, policy version or import) that two or "
                "more labelled; κ and exact agreement pair the two labellers with the lowest account ids on each "
                "item; α uses every labeller")


def agreement_human_human(item_ids: Iterable[int], policy_version: PolicyVersion, *, dimensions: list[str] | None = None,
                          n_resamples: int = 1000) -> list[DimensionAgreement]:
    """The human ceiling on these items, per dimension of the rubric (CEILING_RULE): the labels follow
    the items, not a queue or a policy version, so a queue made under another version still counts.

    `extra` holds "alpha_all_labellers" (Krippendorff's α over every labeller, what a review queue's
    page shows) and "labellers" (how many people labelled those items).
    """
    results = []
    ids = _id_list(item_ids)
    for dim in policy_version.parsed_rubric().dimensions:
        if dimensions is not None and dim.key not in dimensions:
            continue
        rows = list(HumanLabel.objects.filter(item_id__in=ids, is_latest=True, **{f"labels__{dim.key}__isnull": False})
                    .order_by("item_id", "reviewer_id").values_list("item_id", "reviewer_id", f"labels__{dim.key}"))
        first: dict[int, int] = {}
        second: dict[int, int] = {}
        for item_id, _, value in rows:
            if item_id not in first:
                first[item_id] = value
            elif item_id not in second:
                second[item_id] = value
        common = np.array(sorted(second), dtype=np.int64)
        a = np.array([first[i] for i in common.tolist()], dtype=np.int64)
        b = np.array([second[i] for i in common.tolist()], dtype=np.int64)
        result = dimension_agreement(dimension=dim.key, a=a, b=b, groups=query_ids_for(common) if common.size else common,
                                     values=dim.values, n_resamples=n_resamples)
        reviewers = sorted({r for _, r, _ in rows})
        result.extra["labellers"] = len(reviewers)
        result.extra["alpha_all_labellers"] = None
        if common.size:
            grid = np.full((len(reviewers), len(common)), np.nan)
            col = {i: n for n, i in enumerate(common.tolist())}
            for item_id, reviewer, value in rows:
                if item_id in col:
                    grid[reviewers.index(reviewer), col[item_id]] = value
            result.extra["alpha_all_labellers"] = krippendorff_alpha(grid, dim.values)["alpha"]
        results.append(result)
    return results


def multiply_labelled_items(sample_ids: Iterable[int], dimension: str) -> list[int]:
    """Items of these samples that two or more people labelled on the dimension (latest labels).

    From the labels' side first: the items with two or more latest labels (one per reviewer, by
    the partial unique constraint, so counting labels counts people), then the samples' membership
    of those few. Starting from the samples joined 10M sample items to 2M labels and took 6.7 s at
    10M judgments; this reads the latest labels once, 0.7 s (BENCHMARKS.md, "Scale: 10M judgments").
    The empty order_by() matters: HumanLabel's default ordering (item, reviewer, revision) must not
    reach the GROUP BY, where it would make every group one reviewer's and no item count twice.
    """
    multiple = (HumanLabel.objects.filter(is_latest=True, labels__has_key=dimension).order_by()
                .values("item_id").annotate(n=Count("id")).filter(n__gte=2).values("item_id"))
    return sorted(set(SampleItem.objects.filter(sample_id__in=list(sample_ids), item_id__in=multiple).order_by()
                      .values_list("item_id", flat=True)))


def label_sources(item_ids: Iterable[int], dimension: str) -> list[dict]:
    """Where the latest labels on these items come from: one row per (policy version, queue or import)
    with the number of labels and labellers, so a page can say which labels a figure uses."""
    rows = (HumanLabel.objects.filter(item_id__in=_id_list(item_ids), is_latest=True, labels__has_key=dimension)
            .values("policy_version__policy__name", "policy_version__number", "queue__name", "source")
            .annotate(labels=Count("id"), labellers=Count("reviewer", distinct=True))
            .order_by("policy_version__number", "queue__name", "source"))
    sources = dict(HumanLabel.Source.choices)
    return [{"policy_version": f"{r['policy_version__policy__name']} v{r['policy_version__number']}",
             "origin": f"queue “{r['queue__name']}”" if r["queue__name"] else sources.get(r["source"], r["source"]).lower(),
             "labels": r["labels"], "labellers": r["labellers"]} for r in rows]
