"""The hardware-in-the-loop suite: scenarios of the whole chain, run against a rig."""
