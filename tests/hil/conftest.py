"""Sites of the virtual rig for the tests of this folder."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from hil_tests.broker import BrokerMissing, mosquitto_binary
from hil_tests.virtual_board import VirtualBoardError, check_vm_installed
from hil_tests.virtual_site import NodeSpec, VirtualSite


def require_site_tools() -> None:
    """Skip, saying what is missing, without Node, the MicroPython VM or mosquitto."""
    try:
        check_vm_installed()
        mosquitto_binary()
    except (VirtualBoardError, BrokerMissing) as error:
        pytest.skip(f"the virtual site needs the virtual board and mosquitto: {error}")


def running_site(
    tmp_path_factory: pytest.TempPathFactory, name: str, nodes: list[NodeSpec], **options: Any
) -> Iterator[VirtualSite]:
    """A site recording what is published from before its first boot, for a module's fixture."""
    require_site_tools()
    with VirtualSite(tmp_path_factory.mktemp(name), nodes, record_mqtt=True, **options) as site:
        yield site
