"""Roll a new model out as a canary, check it, then promote it or roll it back.

KServe (Standard mode, v0.20+) serves a ``spec.canary`` entry as a second predictor Deployment
``ISVC-NAME-predictor`` beside the stable one, taking ``trafficPercent`` of the requests. A
rollout here:

1. no InferenceService yet, or the same model: a plain deploy (nothing to compare with);
2. adds the candidate as the canary and waits until KServe reports it ready
   (``status.canaryStatuses[].ready``); a candidate that never gets ready is rolled back;
3. checks the candidate against the stable model over HTTP (:func:`compare`): its error rate
   on ``requests`` calls, and its fares for a fixed set of reference trips within tolerance of
   the stable model's;
4. promotes it (KServe's way without a restart: ``predictor.name`` becomes the canary's name,
   its ``storageUri`` the new model, the canary entry is removed) and waits for the rollout, or
   rolls it back (the canary entry removed; the stable model never stopped serving).

The answer says which it did and why, with the figures, and names the models by their versions
(model.json's ``model_version``, also the InferenceService's ``fareflow.io/model-version`` label):
its ``decision`` reads "promoted model version NEW over OLD" or "rolled back model version NEW,
serving OLD". Docs: docs/cluster.md (Canary).
"""

from __future__ import annotations

import hashlib
import json
import math
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass

from components.common import k8s
from components.common.errors import UserError

KIND = "InferenceService"

# Reference trips (what a rider knows before the trip): downtown, the airport run, Capitol Hill,
# Georgetown late at night, a short hop on the Mall, Union Station at rush hour, U Street to
# Navy Yard, Anacostia to Dupont. The pick-up year is filled in per rollout (``reference_year``):
# a model refuses years it was not trained on (components.serve, its year margin).
_TRIPS = (
    ((38.9007, -77.0365), (38.8899, -77.0091), "03/14", "08:00"),
    ((38.9007, -77.0365), (38.8512, -77.0402), "06/01", "17:00"),
    ((38.8899, -77.0091), (38.9097, -77.0654), "11/20", "13:00"),
    ((38.9097, -77.0654), (38.9169, -77.0310), "07/04", "23:00"),
    ((38.8895, -77.0353), (38.8881, -77.0199), "04/09", "10:00"),
    ((38.8973, -77.0063), (38.9038, -77.0431), "09/12", "18:00"),
    ((38.9170, -77.0320), (38.8764, -77.0030), "01/26", "21:00"),
    ((38.8623, -76.9951), (38.9096, -77.0434), "05/30", "07:00"),
)
# The years a model directory without a recorded extent prices (components.serve.domain
# CONTRACT_EXTENT: the trip files' years), and the serving default margin around the trained ones.
CONTRACT_YEARS = (2015, 2019)
YEAR_MARGIN = 1


def reference_trips(year: int) -> tuple[dict, ...]:
    return tuple(
        {
            "ORIGIN_BLOCK_LATITUDE": o[0], "ORIGIN_BLOCK_LONGITUDE": o[1],
            "DESTINATION_BLOCK_LATITUDE": d[0], "DESTINATION_BLOCK_LONGITUDE": d[1],
            "ORIGINDATETIME_TR": f"{day}/{year} {hour}",
        }
        for o, d, day, hour in _TRIPS
    )  # fmt: skip


REFERENCE_TRIPS = reference_trips(2015)


def _model_json(model_uri: str):
    from components.common.storage import read_json, resolve_filesystem

    fs, path = resolve_filesystem(model_uri.rstrip("/") + "/model.json")
    return read_json(fs, path, f"{model_uri}: no model.json (not a fareflow model directory)")


def model_years(model_uri: str) -> tuple[int, int]:
    """The pick-up years a model directory prices: its training years (``model.json`` extent)
    widened by the serving margin, or the contract's years for a model without an extent."""
    meta = _model_json(model_uri)
    years = ((meta or {}).get("extent") or {}).get("year") if isinstance(meta, dict) else None
    if not years:
        return CONTRACT_YEARS
    return int(years[0]) - YEAR_MARGIN, int(years[1]) + YEAR_MARGIN


def model_version(model_uri: str) -> str | None:
    """A model directory's ``model_version`` (model.json), None for a model written before versions."""
    from components.common.model_dir import model_version as version_in

    meta = _model_json(model_uri)
    return version_in(meta) if isinstance(meta, dict) else None


UNVERSIONED = "unversioned"


def decision(action: str, candidate: str | None, previous: str | None = None) -> str:
    """The rollout's decision, naming the models by their versions."""
    cand, prev = candidate or UNVERSIONED, previous or UNVERSIONED
    if action == "promoted":
        return f"promoted model version {cand} over {prev}"
    if action == "rolled back":
        return f"rolled back model version {cand}, serving {prev}"
    if action == "unchanged":
        return f"unchanged: model version {cand} already serves"
    return f"deployed model version {cand}"


def pick_year(stable: tuple[int, int], candidate: tuple[int, int]) -> int | None:
    """A pick-up year both models price (the latest such), or None when they share none."""
    low, high = max(stable[0], candidate[0]), min(stable[1], candidate[1])
    return high if low <= high else None


@dataclass(frozen=True)
class CanaryCheck:
    """What a candidate must meet to be promoted."""

    traffic_percent: int = 20
    requests: int = 50  # calls to the candidate for its error rate
    max_error_rate: float = 0.0
    abs_tolerance: float = 2.0  # dollars: |candidate - stable| per reference trip ...
    rel_tolerance: float = 0.25  # ... or this share of the stable fare, whichever is larger
    ready_timeout_s: float = 600.0

    def __post_init__(self) -> None:
        if not 1 <= self.traffic_percent <= 100:
            raise UserError(f"canary traffic percent {self.traffic_percent}: expected an integer in [1, 100]")
        if self.requests < 1:
            raise UserError(f"canary requests {self.requests}: expected >= 1")
        if not 0.0 <= self.max_error_rate < 1.0:
            raise UserError(f"canary max error rate {self.max_error_rate}: expected a share in [0, 1)")
        if self.abs_tolerance < 0 or self.rel_tolerance < 0:
            raise UserError("canary tolerances: expected >= 0")


@dataclass(frozen=True)
class Verdict:
    promote: bool
    reason: str
    error_rate: float
    max_abs_diff: float  # dollars, over the reference trips (nan when no answer to compare)
    stable_fares: tuple[float, ...]
    candidate_fares: tuple[float, ...]


Predict = Callable[[Sequence[dict]], list[float]]


def compare(
    stable: Predict,
    candidate: Predict,
    check: CanaryCheck,
    trips: Sequence[dict] = REFERENCE_TRIPS,
    compare_fares: bool = True,
) -> Verdict:
    """The candidate's error rate over ``check.requests`` calls, then its fares for ``trips``
    against the stable model's (unless ``compare_fares`` is False: the models price no common
    year). A call that fails or answers no finite fare per trip counts as an error."""
    errors, last, last_error = 0, None, ""
    for _ in range(check.requests):
        try:
            fares = candidate(trips)
            if len(fares) != len(trips) or not all(math.isfinite(f) for f in fares):
                raise UserError(f"expected {len(trips)} finite fares, got {fares!r:.200}")
            last = fares
        except UserError as err:
            errors += 1
            last_error = str(err)
    rate = errors / check.requests
    if not compare_fares:
        if last is None or rate > check.max_error_rate:
            reason = f"error rate {rate:.1%} > {check.max_error_rate:.1%} ({errors}/{check.requests} calls failed: {last_error})"
            return Verdict(False, reason, rate, math.nan, (), tuple(last or ()))
        reason = f"error rate {rate:.1%}; fares not compared: the two models price no common pick-up year"
        return Verdict(True, reason, rate, math.nan, (), tuple(last))
    stable_fares = tuple(stable(trips))
    if last is None:
        return Verdict(
            False, f"every call to the candidate failed ({last_error})", rate, math.nan, stable_fares, ()
        )
    diffs = [abs(c - s) for c, s in zip(last, stable_fares, strict=True)]
    worst = max(range(len(diffs)), key=diffs.__getitem__)
    allowed = max(check.abs_tolerance, check.rel_tolerance * abs(stable_fares[worst]))
    if rate > check.max_error_rate:
        reason = f"error rate {rate:.1%} > {check.max_error_rate:.1%} ({errors}/{check.requests} calls failed: {last_error})"
        return Verdict(False, reason, rate, diffs[worst], stable_fares, tuple(last))
    far = [
        i
        for i, d in enumerate(diffs)
        if d > max(check.abs_tolerance, check.rel_tolerance * abs(stable_fares[i]))
    ]
    if far:
        reason = (
            f"{len(far)}/{len(trips)} reference trips off the stable model's fare by more than the tolerance "
            f"(worst: trip {worst} ${last[worst]:.2f} vs ${stable_fares[worst]:.2f}, allowed ±${allowed:.2f})"
        )
        return Verdict(False, reason, rate, diffs[worst], stable_fares, tuple(last))
    reason = f"error rate {rate:.1%}, reference fares within tolerance (worst diff ${diffs[worst]:.2f})"
    return Verdict(True, reason, rate, diffs[worst], stable_fares, tuple(last))


def http_predictor(base_url: str, model: str, timeout: float = 30.0) -> Predict:
    """v1 ``:predict`` on a predictor Service; any failure is a ``UserError``."""
    url = f"{base_url.rstrip('/')}/v1/models/{model}:predict"

    def predict(trips: Sequence[dict]) -> list[float]:
        body = json.dumps({"instances": list(trips)}).encode()
        request = urllib.request.Request(url, data=body, headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(request, timeout=timeout) as response:
                answer = json.loads(response.read())
        except urllib.error.HTTPError as err:
            raise UserError(f"{url}: HTTP {err.code}: {err.read()[:300].decode(errors='replace')}") from None
        except (OSError, ValueError) as err:
            raise UserError(f"{url}: {err}") from None
        fares = answer.get("predictions") if isinstance(answer, dict) else None
        if not isinstance(fares, list) or not all(isinstance(f, int | float) for f in fares):
            raise UserError(f"{url}: expected {{'predictions': [fare, ...]}}, got {str(answer)[:200]}")
        return [float(f) for f in fares]

    return predict


def in_cluster_url(isvc: str, namespace: str, predictor_name: str | None) -> str:
    return f"http://{k8s.predictor_service(isvc, predictor_name)}.{namespace}.svc.cluster.local"


def canary_name(storage_uri: str) -> str:
    """A stable DNS-label name per model (promoting keeps it; the next model gets another)."""
    return "m-" + hashlib.sha256(storage_uri.rstrip("/").encode()).hexdigest()[:10]


def _stable(isvc: dict) -> tuple[str, str | None]:
    predictor = (isvc.get("spec") or {}).get("predictor") or {}
    return ((predictor.get("model") or {}).get("storageUri") or ""), predictor.get("name")


def _candidate_ready(isvc: dict, name: str) -> bool:
    for status in (isvc.get("status") or {}).get("canaryStatuses") or []:
        if status.get("name") == name:
            return bool(status.get("ready"))
    return False


def rollout(
    build: Callable[..., dict],
    new_uri: str,
    check: CanaryCheck,
    *,
    deploy: Callable[[dict], dict],
    predictor_url: Callable[[str | None], str],
    model_name: str,
    api=None,
    poll: float = 5.0,
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
    predictor_for: Callable[[str], Predict] | None = None,
    years: Callable[[str], tuple[int, int]] = model_years,
    version_of: Callable[[str], str | None] = model_version,
) -> dict:
    """Roll ``new_uri`` out (see the module docstring). ``build(storage_uri, predictor_name=,
    canary=, model_version=)`` makes the InferenceService (``model_version``: its predictor's
    model's, for the label); ``deploy(obj)`` creates/updates it and waits for its rollout;
    ``predictor_url(predictor_name)`` is where a predictor answers; ``version_of(uri)`` reads a
    model's version. Returns a summary whose ``action`` is ``deployed``, ``unchanged``,
    ``promoted`` or ``rolled back``, whose ``decision`` says it with the models' versions, and
    whose ``model_version`` is the version serving afterwards (``candidate_version`` and
    ``previous_version``: the two compared)."""
    from components.common import k8s_api

    predictor_for = predictor_for or (lambda url: http_predictor(url, model_name))
    new_version = version_of(new_uri)
    first = build(new_uri, model_version=new_version)
    name, ns = first["metadata"]["name"], first["metadata"]["namespace"]
    current = k8s_api.get(KIND, name, ns, api=api)
    if current is None:
        return {
            **deploy(first),
            "action": "deployed",
            "decision": decision("deployed", new_version),
            "model_version": new_version,
            "reason": "no model was serving: nothing to compare with",
        }
    stable_uri, stable_name = _stable(current)
    if stable_uri.rstrip("/") == new_uri.rstrip("/"):
        return {
            **deploy(build(new_uri, predictor_name=stable_name, model_version=new_version)),
            "action": "unchanged",
            "decision": decision("unchanged", new_version),
            "model_version": new_version,
            "reason": "this model already serves",
        }
    stable_version = _serving_version(current, stable_uri, version_of)
    versions = {"candidate_version": new_version, "previous_version": stable_version}

    def rolled_back(reason: str, **figures) -> dict:
        _roll_back(name, ns, api)
        return {
            "action": "rolled back", "decision": decision("rolled back", new_version, stable_version),
            "name": name, "namespace": ns, "storage_uri": stable_uri, "candidate": new_uri,
            "model_version": stable_version, **versions, "reason": reason, **figures,
        }  # fmt: skip

    cname = canary_name(new_uri)
    candidate = k8s.Canary(cname, new_uri, check.traffic_percent)
    beside = build(stable_uri, predictor_name=stable_name, canary=candidate, model_version=stable_version)
    k8s_api.apply(beside, api=api)
    deadline = clock() + check.ready_timeout_s
    while True:
        obj = k8s_api.get(KIND, name, ns, api=api) or {}
        if _candidate_ready(obj, cname):
            break
        if clock() >= deadline:
            return rolled_back(
                f"candidate {cname} not ready after {check.ready_timeout_s:g}s "
                f"(canaryStatuses {(obj.get('status') or {}).get('canaryStatuses')})"
            )
        sleep(poll)

    candidate_years = years(new_uri)
    year = pick_year(years(stable_uri), candidate_years)
    trips = reference_trips(candidate_years[1] if year is None else year)
    verdict = compare(
        predictor_for(predictor_url(stable_name)),
        predictor_for(predictor_url(cname)),
        check,
        trips,
        year is not None,
    )
    figures = {
        k: None if isinstance(v, float) and math.isnan(v) else v  # JSON has no NaN
        for k, v in asdict(verdict).items()
        if k not in ("promote", "reason")
    }
    if not verdict.promote:
        return rolled_back(verdict.reason, **figures)
    # Promote without a restart: the canary's Deployment becomes the stable one.
    promoted = build(new_uri, predictor_name=cname, model_version=new_version)
    promoted["spec"]["canary"] = None
    summary = deploy(promoted)
    return {
        **summary, "action": "promoted", "decision": decision("promoted", new_version, stable_version),
        "candidate": new_uri, "previous": stable_uri, "model_version": new_version, **versions,
        "reason": verdict.reason, **figures,
    }  # fmt: skip


def _serving_version(isvc: dict, stable_uri: str, version_of: Callable[[str], str | None]) -> str | None:
    """The version of the model serving now: the InferenceService's label (set at its deploy),
    else its model.json; None when neither says (a model from before versions, or gone)."""
    labelled = ((isvc.get("metadata") or {}).get("labels") or {}).get(k8s.MODEL_VERSION_LABEL)
    if labelled:
        return labelled
    try:
        return version_of(stable_uri)
    except UserError:
        return None


def _roll_back(name: str, ns: str, api) -> None:
    from components.common import k8s_api

    k8s_api.patch(KIND, name, ns, {"spec": {"canary": None}}, api=api)
