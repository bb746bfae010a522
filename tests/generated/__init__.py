"""Seeded generators of valid journey files, global rules files and user-event streams, to prove
at random that the simulator is the oracle: what `journeys simulate` predicts is what the
provider receives. `generate_case(seed, scale, base)` gives one case; the same seed and base
always give the same case."""

from tests.generated.case import Case, generate_case
from tests.generated.scale import LIVE, SIM, TimeScale

__all__ = ["LIVE", "SIM", "Case", "TimeScale", "generate_case"]
