"""Where frames enter the gateway: each source hands `Reception`s to the pipeline and
sends downlinks back on its own path. The pipeline never knows which source fed it."""

from .base import Downlink, Reception, Rejected, Source, SourceStats, TransmitError
from .simulated import SimulatedRadio

__all__ = ["Downlink", "Reception", "Rejected", "SimulatedRadio", "Source", "SourceStats", "TransmitError"]
