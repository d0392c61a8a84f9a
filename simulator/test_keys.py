"""The virtual rig's keys: public test keys, never a real site's, and nothing that ships to a gateway uses them.

The master key is the one the shared vectors are built with (`payload_codec/vectors/keys.json`), so
a frame from a virtual board can be checked by hand with `borne codec decode --keys`.
"""

TEST_MASTER_KEY = bytes(range(16))
TEST_SITE = "virtual-site"
