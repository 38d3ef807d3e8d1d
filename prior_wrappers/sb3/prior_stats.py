"""Logging the prior wrapper's statistics (``info["prior_stats"]``) as ``prior/*`` keys."""

from __future__ import annotations

from typing import Any

import numpy as np

PRIOR_STATS = "prior_stats"


class PriorStatsLogging:
    """Mixin for SB3 algorithms: after every environment step, record the mean over environments of each
    numeric entry of ``info["prior_stats"]`` (e.g. ``calls``, ``cache_hit_rate``, ``latency_ms``) as
    ``prior/<name>``; the logger writes them with the other keys. Does nothing when the env reports none."""

    def _update_info_buffer(self, infos: list[dict[str, Any]], dones: np.ndarray | None = None) -> None:
        super()._update_info_buffer(infos, dones)  # type: ignore[misc]
        reports = [info[PRIOR_STATS] for info in infos if isinstance(info.get(PRIOR_STATS), dict)]
        for name in reports[0] if reports else ():
            values = [r[name] for r in reports if isinstance(r.get(name), (int, float, np.number))]
            if values:
                key = name if name.startswith("prior/") else f"prior/{name}"
                self.logger.record(key, float(np.mean(values)))  # type: ignore[attr-defined]
