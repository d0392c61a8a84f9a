# Borne node and bridge firmware. The wire contract is payload_codec's, rebuilt for MicroPython.
