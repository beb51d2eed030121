"""SQL text for one partition: classify rows by rule, project clean features, profile.

Only string building lives here (no connection), so the queries are easy to print and test.
The raw partition is registered in DuckDB as the view/table ``raw_input``.
"""

from __future__ import annotations

from components.common import contract

from .rules import RuleSet

EARTH_RADIUS_KM = 6371.0088  # IUGG mean Earth radius


def raw_with_partition(year: int, month: int) -> str:
    """The raw rows plus their partition keys as typed columns ``year``/``month``."""
    return f"SELECT *, CAST({int(year)} AS SMALLINT) AS year, CAST({int(month)} AS TINYINT) AS month FROM raw_input"


def _literal(name: str) -> str:
    return "'" + name.replace("'", "''") + "'"


def classify(ruleset: RuleSet, year: int, month: int) -> str:
    """Every raw row with ``rule``: the name of the first rule it fails, NULL when clean.

    Consecutive row-scoped rules become one CASE; a partition-scoped rule (window
    functions) becomes its own stage that only sees rows no earlier rule rejected.
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


def haversine_km(lat1: str, lon1: str, lat2: str, lon2: str) -> str:
    """Great-circle distance between two (lat, lon) points given in degrees."""
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


def clean_projection() -> str:
    return ", ".join(f"{expr} AS {name}" for name, expr in CLEAN_EXPRESSIONS.items())


def quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'
