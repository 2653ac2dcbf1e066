"""The memoised planner every run of an experiment asks (one per worker process).

The optimizer is deterministic, so the same question — (policy, rps, configuration in effect, params) on the same
pipeline — gets the same answer without re-solving (the decision log keeps the original solve time)."""

from __future__ import annotations


class PlanCache:
    """Memoised planner: same (policy, rps, current configuration, params) -> same plan."""

    def __init__(self, max_entries: int = 20_000):
        from pipetune.optimizer import plan_pipeline

        self._plan = plan_pipeline
        self._cache: dict = {}
        self.hits = 0
        self.misses = 0
        self.max_entries = max_entries

    def __call__(self, pipeline, rps, policy="ipa", current=None, profiles=None, **params):
        key = (
            id(pipeline),
            policy,
            round(float(rps), 6),
            tuple(sorted(current.items())) if current else None,
            repr(sorted(params.items())),
        )
        hit = self._cache.get(key)
        if hit is not None and hit[0] is pipeline:
            self.hits += 1
            return hit[1]
        self.misses += 1
        res = self._plan(pipeline, rps, policy=policy, current=current, profiles=profiles, **params)
        if len(self._cache) >= self.max_entries:
            self._cache.clear()
        self._cache[key] = (pipeline, res)
        return res


_PLANNER: PlanCache | None = None


def planner() -> PlanCache:
    """This process's plan cache."""
    global _PLANNER
    if _PLANNER is None:
        _PLANNER = PlanCache()
    return _PLANNER
