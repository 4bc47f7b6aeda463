"""SAC (unconstrained): the reference point that shows what ignoring the cost does.

Its loss never reads a cost critic or the multiplier, so neither learns (the multiplier stays at
its initial value): an exact saving of a third of the critics' work.
"""

from __future__ import annotations

from algd.agents.sac_family import SACFamily


class SAC(SACFamily):
    def updates_multiplier(self) -> bool:
        return False

    def trains_cost_critics(self) -> bool:
        return False
