"""SQL text for one partition: classify rows by rule, project clean features, profile.

Only string building lives here (no connection), so the queries are easy to print and test.
The raw partition is registered in DuckDB as the view/table ``raw_input``.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

import pyarrow as pa

from components.common import contract
from components.common.features import EARTH_RADIUS_KM

if TYPE_CHECKING:  # rules.validate runs these queries: a runtime import would be a cycle
    from .rules import RuleSet


def raw_with_partition(year: int, month: int) -> str:
    """The raw rows plus their partition keys as typed columns ``year``/``month``."""
    return f"SELECT *, CAST({int(year)} AS SMALLINT) AS year, CAST({int(month)} AS TINYINT) AS month FROM raw_input"


def _literal(name: str) -> str:
    return "'" + name.replace("'", "''") + "'"


# ``row_number() OVER (PARTITION BY c1, c2, ... ORDER BY o1, ...) > 1``: the exact-duplicate
# pattern. Such a rule gets a hash pre-filter (see ``classify_statements``); any other
# partition-scoped expression runs as written.
_IDENT = r'(?:[A-Za-z_][A-Za-z0-9_]*|"(?:[^"]|"")+")'
_DUPLICATE_RULE = re.compile(
    rf"""^\s*row_number\s*\(\s*\)\s+over\s*\(\s*partition\s+by\s+
    (?P<cols>{_IDENT}(?:\s*,\s*{_IDENT})*)
    \s+order\s+by\s+(?P<order>[^()]*?)\s*\)\s*>\s*1\s*$""",
    re.IGNORECASE | re.VERBOSE | re.DOTALL,
)
DUP_HASH = "__dup_hash"
# Tests monkeypatch this to force hash collisions; DuckDB's hash() treats NULLs as equal,
# 0.0 == -0.0 and NaN == NaN, exactly like PARTITION BY, so equal rows always share a hash.
HASH_FUNCTION = "hash"


def duplicate_columns(expr: str) -> list[str] | None:
    """The PARTITION BY columns when ``expr`` is the exact-duplicate pattern, else None."""
    match = _DUPLICATE_RULE.match(expr)
    if not match:
        return None
    return re.findall(_IDENT, match["cols"])


def _case(rules) -> str:
    whens = " ".join(f"WHEN coalesce(({r.reject_if}), false) THEN {_literal(r.name)}" for r in rules)
    return f"CASE {whens} END"


def classify(ruleset: RuleSet, year: int, month: int) -> str:
    """Every raw row with ``rule``: the name of the first rule it fails, NULL when clean.

    One query, the reference form of the rules (used to validate a rule set, and by the
    tests as the oracle for :func:`classify_statements`). Consecutive row-scoped rules
    become one CASE; a partition-scoped rule (window functions) becomes its own stage that
    only sees rows no earlier rule rejected.
    """
    stages = [f"s0 AS (SELECT *, CAST(NULL AS VARCHAR) AS rule FROM ({raw_with_partition(year, month)}))"]
    pending: list = []

    def flush_rows() -> None:
        if not pending:
            return
        whens = " ".join(f"WHEN coalesce(({r.reject_if}), false) THEN {_literal(r.name)}" for r in pending)
        prev = f"s{len(stages) - 1}"
        stages.append(
            f"s{len(stages)} AS (SELECT * REPLACE (CASE WHEN rule IS NOT NULL THEN rule {whens} END AS rule) FROM {prev})"
        )
        pending.clear()

    for rule in ruleset.rules:
        if rule.scope == "rows":
            pending.append(rule)
            continue
        flush_rows()
        prev = f"s{len(stages) - 1}"
        stages.append(
            f"s{len(stages)} AS (SELECT * FROM {prev} WHERE rule IS NOT NULL UNION ALL "
            f"SELECT * REPLACE (CASE WHEN coalesce(({rule.reject_if}), false) THEN {_literal(rule.name)} END AS rule) "
            f"FROM {prev} WHERE rule IS NULL)"
        )
    flush_rows()
    return "WITH " + ",\n".join(stages) + f"\nSELECT * FROM s{len(stages) - 1}"


def classify_statements(
    ruleset: RuleSet, year: int, month: int, table: str, *, order: bool, extra: dict[str, str] | None = None
) -> list[str]:
    """The rules as statements that build ``table`` (raw columns, year, month, rule) in place.

    ``table`` also gets one ``__dup_hash<i>`` column per exact-duplicate rule, and the
    ``extra`` columns (name -> SQL over the raw row), computed once while loading.

    Same result per row as :func:`classify`, but the rows keep one order (the input's, or
    ``source_file, source_line`` when ``order``), so the outputs need no sort:

    - ``CREATE TABLE`` with the leading row-scoped rules as one CASE (one pass over the input);
    - a partition-scoped rule: ``UPDATE`` of the rows its expression rejects, evaluated over
      the rows no earlier rule rejected (as in :func:`classify`). The exact-duplicate pattern
      is evaluated only over rows whose hash over the compared columns occurs more than once
      (equal rows hash equally, so no duplicate is missed; rows that merely share a hash are
      in the candidate set but not in the same window partition, so none is wrongly flagged);
    - later row-scoped rules: ``UPDATE ... WHERE rule IS NULL``.
    """
    rules = list(ruleset.rules)
    lead: list = []
    while rules and rules[0].scope == "rows":
        lead.append(rules.pop(0))
    rule_expr = _case(lead) if lead else "CAST(NULL AS VARCHAR)"
    # one stored hash column per exact-duplicate rule (raw columns never change, so the
    # hash can be taken once, while the table is built)
    hashes = {}
    for rule in rules:
        cols = duplicate_columns(rule.reject_if) if rule.scope == "partition" else None
        if cols is not None:
            hashes[rule.name] = (f"{DUP_HASH}{len(hashes)}", f"{HASH_FUNCTION}({', '.join(cols)})")
    added = [*(extra or {}).items(), *((name, expr) for name, expr in hashes.values())]
    extra_sql = "".join(f", {expr} AS {name}" for name, expr in added)
    statements = [
        f"CREATE OR REPLACE TEMP TABLE {table} AS SELECT *, {rule_expr} AS rule{extra_sql} "
        f"FROM ({raw_with_partition(year, month)})" + (" ORDER BY source_file, source_line" if order else "")
    ]
    pending: list = []

    def flush_rows() -> None:
        if pending:
            case = _case(pending)
            statements.append(f"UPDATE {table} SET rule = {case} WHERE rule IS NULL AND {case} IS NOT NULL")
            pending.clear()

    for rule in rules:
        if rule.scope == "rows":
            pending.append(rule)
            continue
        flush_rows()
        survivors = "rule IS NULL"
        if rule.name in hashes:
            h = hashes[rule.name][0]
            survivors += (
                f" AND {h} IN (SELECT {h} FROM {table} WHERE rule IS NULL GROUP BY {h} HAVING count(*) > 1)"
            )
        statements.append(
            f"UPDATE {table} SET rule = {_literal(rule.name)} FROM (SELECT rid FROM (SELECT rowid AS rid, "
            f"coalesce(({rule.reject_if}), false) AS hit FROM {table} WHERE {survivors}) WHERE hit) AS hits "
            f"WHERE {table}.rowid = hits.rid"
        )
    flush_rows()
    return statements


def haversine_km(lat1: str, lon1: str, lat2: str, lon2: str) -> str:
    """Great-circle distance between two (lat, lon) points given in degrees: the SQL form of
    ``components.common.features.haversine_km``."""
    return (
        f"(2 * {EARTH_RADIUS_KM} * asin(sqrt("
        f"pow(sin(radians({lat2} - {lat1}) / 2), 2) + "
        f"cos(radians({lat1})) * cos(radians({lat2})) * pow(sin(radians({lon2} - {lon1}) / 2), 2))))"
    )


RAW_DISTANCE = haversine_km(
    "ORIGIN_BLOCK_LATITUDE",
    "ORIGIN_BLOCK_LONGITUDE",
    "DESTINATION_BLOCK_LATITUDE",
    "DESTINATION_BLOCK_LONGITUDE",
)

# contract.CLEAN_SCHEMA column -> SQL over a classified raw row.
CLEAN_EXPRESSIONS: dict[str, str] = {
    "objectid": "OBJECTID",
    contract.LABEL: "FAREAMOUNT",
    contract.PICKUP: "ORIGINDATETIME_TR",
    "year": "CAST(year(ORIGINDATETIME_TR) AS SMALLINT)",
    "month": "CAST(month(ORIGINDATETIME_TR) AS TINYINT)",
    "weekday": "CAST(isodow(ORIGINDATETIME_TR) - 1 AS TINYINT)",  # Monday = 0
    "hour": "CAST(hour(ORIGINDATETIME_TR) AS TINYINT)",
    "origin_lat": "ORIGIN_BLOCK_LATITUDE",
    "origin_lon": "ORIGIN_BLOCK_LONGITUDE",
    "dest_lat": "DESTINATION_BLOCK_LATITUDE",
    "dest_lon": "DESTINATION_BLOCK_LONGITUDE",
    "distance_km": RAW_DISTANCE,
    "mileage": "MILEAGE",
    "duration": "DURATION",
}
assert tuple(CLEAN_EXPRESSIONS) == tuple(contract.CLEAN_SCHEMA.names)


def clean_projection(overrides: dict[str, str] | None = None) -> str:
    """The clean columns as SQL; ``overrides`` replaces expressions (e.g. by a precomputed column)."""
    exprs = CLEAN_EXPRESSIONS | (overrides or {})
    return ", ".join(f"{exprs[name]} AS {name}" for name in CLEAN_EXPRESSIONS)


# Arrow type -> DuckDB type, for the schemas the step reads and writes.
DUCK_TYPES = {
    pa.int8(): "TINYINT",
    pa.int16(): "SMALLINT",
    pa.int32(): "INTEGER",
    pa.int64(): "BIGINT",
    pa.uint64(): "UBIGINT",
    pa.float64(): "DOUBLE",
    pa.string(): "VARCHAR",
    pa.timestamp("s"): "TIMESTAMP",
}


def create_table(name: str, schema: pa.Schema) -> str:
    """``CREATE TEMP TABLE`` of ``schema``'s columns (no rows)."""
    cols = ", ".join(f"{quote(f.name)} {DUCK_TYPES[f.type]}" for f in schema)
    return f"CREATE TEMP TABLE {name} ({cols})"


def quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'
