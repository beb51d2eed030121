"""The declarative rule set: loading, overriding, rendering and validating rules.

The default rules live in ``rules.yaml`` next to this module (the one place they are
defined). A user file given with ``--rules`` is merged over them:

- ``rules``: an entry whose ``name`` matches a default rule overrides the given fields;
  a new name is appended (rules run in order, first failure wins); ``enabled: false``
  removes a rule.
- ``params``: override or add ``${name}`` substitutions used in expressions.
- ``gate``: ``max_total_reject_pct``.
- ``replace: true``: start from an empty rule set instead of the defaults.

Expressions are DuckDB SQL and are checked against an empty table of the raw schema when
the rule set is loaded, so a typo fails fast with the rule's name and file.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field, replace
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from components.common import contract
from components.common.errors import UserError

DEFAULT_RULES_FILE = "rules.yaml"
SCOPES = ("rows", "partition")
_NAME = re.compile(r"^[a-z][a-z0-9_]*$")
_RULE_KEYS = {"name", "description", "reject_if", "scope", "max_reject_pct", "enabled"}
_TOP_KEYS = {"params", "gate", "rules", "replace"}
TOTAL = "total"  # key for the overall threshold in --max-reject-pct overrides


@dataclass(frozen=True)
class Rule:
    name: str
    description: str
    reject_if: str  # rendered SQL (params substituted)
    scope: str = "rows"
    max_reject_pct: float | None = None


@dataclass(frozen=True)
class RuleSet:
    rules: tuple[Rule, ...]
    params: dict[str, Any] = field(default_factory=dict)
    max_total_reject_pct: float | None = None

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(r.name for r in self.rules)

    def to_dict(self) -> dict:
        """A self-contained YAML-able form (already rendered; used to ship rules to workers/tasks)."""
        return {
            "replace": True,
            "params": dict(self.params),
            "gate": {"max_total_reject_pct": self.max_total_reject_pct},
            "rules": [asdict(r) for r in self.rules],
        }

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.to_dict(), sort_keys=False)

    def with_thresholds(self, overrides: dict[str, float | None]) -> RuleSet:
        """Override gate thresholds: {rule name or "total": pct or None (no limit)}."""
        unknown = set(overrides) - set(self.names) - {TOTAL}
        if unknown:
            raise UserError(
                f"--max-reject-pct: unknown rule(s) {sorted(unknown)}; expected one of {list(self.names)} or {TOTAL!r}"
            )
        rules = tuple(
            replace(r, max_reject_pct=overrides[r.name]) if r.name in overrides else r for r in self.rules
        )
        total = overrides.get(TOTAL, self.max_total_reject_pct)
        return RuleSet(rules=rules, params=self.params, max_total_reject_pct=total)


def _read_yaml(text: str, origin: str) -> dict:
    try:
        data = yaml.safe_load(text) or {}
    except yaml.YAMLError as err:
        raise UserError(f"{origin}: not valid YAML: {str(err).splitlines()[0]}") from None
    if not isinstance(data, dict):
        raise UserError(f"{origin}: expected a mapping with keys {sorted(_TOP_KEYS)}")
    extra = set(data) - _TOP_KEYS
    if extra:
        raise UserError(f"{origin}: unknown key(s) {sorted(extra)}; expected {sorted(_TOP_KEYS)}")
    return data


def default_rules_text() -> str:
    return resources.files("components.quality").joinpath(DEFAULT_RULES_FILE).read_text()


def _pct(value: Any, where: str) -> float | None:
    if value is None:
        return None
    try:
        pct = float(value)
    except (TypeError, ValueError):
        raise UserError(f"{where}: expected a percentage (number 0-100), got {value!r}") from None
    if not 0 <= pct <= 100:
        raise UserError(f"{where}: expected a percentage between 0 and 100, got {pct}")
    return pct


def _merge(base: dict, over: dict, origin: str) -> dict:
    """Merge a user rules document ``over`` into ``base`` (both raw YAML dicts)."""
    rules: list[dict] = [] if over.get("replace") else [dict(r) for r in base.get("rules") or []]
    params = {} if over.get("replace") else dict(base.get("params") or {})
    gate = {} if over.get("replace") else dict(base.get("gate") or {})
    params.update(over.get("params") or {})
    gate.update(over.get("gate") or {})
    by_name = {r.get("name"): r for r in rules}
    for i, entry in enumerate(over.get("rules") or []):
        where = f"{origin}: rules[{i}]"
        if not isinstance(entry, dict) or "name" not in entry:
            raise UserError(f"{where}: expected a mapping with at least 'name'")
        extra = set(entry) - _RULE_KEYS
        if extra:
            raise UserError(
                f"{where} ({entry['name']}): unknown key(s) {sorted(extra)}; expected {sorted(_RULE_KEYS)}"
            )
        if entry["name"] in by_name:
            by_name[entry["name"]].update(entry)
        else:
            new = dict(entry)
            rules.append(new)
            by_name[new["name"]] = new
    return {"params": params, "gate": gate, "rules": rules}


_PLACEHOLDER = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")


def _render(text: str, params: dict[str, Any], where: str) -> str:
    """Replace ``${name}`` with ``params[name]``; any other ``$`` is left as written."""

    def sub(match: re.Match) -> str:
        key = match.group(1)
        if key not in params:
            raise UserError(f"{where}: unknown parameter ${{{key}}}; define it under 'params'")
        return str(params[key])

    return _PLACEHOLDER.sub(sub, text)


def _build(doc: dict, origin: str) -> RuleSet:
    params = doc.get("params") or {}
    gate = doc.get("gate") or {}
    extra_gate = set(gate) - {"max_total_reject_pct"}
    if extra_gate:
        raise UserError(
            f"{origin}: gate: unknown key(s) {sorted(extra_gate)}; expected ['max_total_reject_pct']"
        )
    rules: list[Rule] = []
    seen: set[str] = set()
    for entry in doc.get("rules") or []:
        name = entry.get("name")
        where = f"{origin}: rule {name!r}"
        if entry.get("enabled", True) is False:
            continue
        if not isinstance(name, str) or not _NAME.match(name):
            raise UserError(f"{where}: name must match {_NAME.pattern}")
        if name in seen:
            raise UserError(f"{where}: defined twice")
        seen.add(name)
        for key in ("description", "reject_if"):
            if not isinstance(entry.get(key), str) or not entry[key].strip():
                raise UserError(f"{where}: '{key}' must be a non-empty string")
        scope = entry.get("scope", "rows")
        if scope not in SCOPES:
            raise UserError(f"{where}: scope must be one of {SCOPES}, got {scope!r}")
        rules.append(
            Rule(
                name=name,
                description=" ".join(_render(entry["description"], params, where).split()),
                reject_if=_render(entry["reject_if"], params, where).strip(),
                scope=scope,
                max_reject_pct=_pct(entry.get("max_reject_pct"), f"{where}: max_reject_pct"),
            )
        )
    if not rules:
        raise UserError(f"{origin}: no rules left to run")
    total = _pct(gate.get("max_total_reject_pct"), f"{origin}: gate.max_total_reject_pct")
    ruleset = RuleSet(rules=tuple(rules), params=dict(params), max_total_reject_pct=total)
    validate(ruleset, origin)
    return ruleset


def load_rules(path: str | Path | None = None, *, text: str | None = None) -> RuleSet:
    """The default rules, merged with a user file (``path``) or user YAML text (``text``)."""
    base = _read_yaml(default_rules_text(), f"components/quality/{DEFAULT_RULES_FILE}")
    if path is not None and text is not None:
        raise ValueError("give path or text, not both")
    if path is not None:
        p = Path(path)
        if not p.is_file():
            raise UserError(f"{p}: rules file not found")
        origin = str(p)
        over = _read_yaml(p.read_text(), origin)
    elif text is not None and text.strip():
        origin = "rules YAML"
        over = _read_yaml(text, origin)
    else:
        return _build(base, f"components/quality/{DEFAULT_RULES_FILE}")
    return _build(_merge(base, over, origin), origin)


def ruleset_from_yaml(text: str) -> RuleSet:
    """Inverse of ``RuleSet.to_yaml`` (exact: no defaults merged in)."""
    doc = _read_yaml(text, "rules YAML")
    return _build(_merge({}, doc, "rules YAML"), "rules YAML")


def validate(ruleset: RuleSet, origin: str) -> None:
    """Bind every expression against an empty raw table so errors name the rule, not a worker."""
    import duckdb

    from . import sql

    con = duckdb.connect()
    try:
        # an empty table of the raw columns as DuckDB reads them from the ingest output (not an
        # Arrow table registered: that makes DuckDB import pandas, ~0.3 s of every run's start)
        con.execute(sql.create_table("raw_input", contract.RAW_SCHEMA))
        for rule in ruleset.rules:
            try:
                con.execute(
                    f"SELECT ({rule.reject_if})::BOOLEAN FROM ({sql.raw_with_partition(2000, 1)})"
                ).fetchall()
            except duckdb.Error as err:
                msg = str(err).splitlines()[0]
                raise UserError(
                    f"{origin}: rule {rule.name!r}: invalid reject_if expression: {msg}"
                ) from None
        try:  # the whole pipeline too (window functions, CASE composition)
            con.execute(sql.classify(ruleset, 2000, 1) + " LIMIT 0").fetchall()
        except duckdb.Error as err:
            raise UserError(f"{origin}: rules do not compose: {str(err).splitlines()[0]}") from None
    finally:
        con.close()
