"""The Toxiproxy toxic family: one module per toxic type (as Toxiproxy's registry has)."""

from harness.faults.families.toxics.bandwidth import Bandwidth
from harness.faults.families.toxics.base import LINK_PARAMS, ToxicFault, split_link
from harness.faults.families.toxics.latency import Latency
from harness.faults.families.toxics.limit_data import LimitData
from harness.faults.families.toxics.reset import Reset
from harness.faults.families.toxics.slicer import Slicer
from harness.faults.families.toxics.slow_close import SlowClose
from harness.faults.families.toxics.timeout import Timeout

#: the toxic kinds, in the order the CLI lists them
TOXICS: tuple[ToxicFault, ...] = (Latency(), Bandwidth(), Timeout(), Reset(), SlowClose(),
                                  Slicer(), LimitData())

__all__ = ["LINK_PARAMS", "TOXICS", "Bandwidth", "Latency", "LimitData", "Reset", "Slicer",
           "SlowClose", "Timeout", "ToxicFault", "split_link"]
