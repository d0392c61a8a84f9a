"""End-to-end tests of the whole chain, and the parts of the rig they run on."""
