"""SAC (unconstrained): the reference point that shows what ignoring the cost does.

It still learns a cost critic, for the logs only; the multiplier stays at its initial value and
enters nothing.
"""

from __future__ import annotations

from algd.agents.sac_family import SACFamily


class SAC(SACFamily):
    def updates_multiplier(self) -> bool:
        return False
