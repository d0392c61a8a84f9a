# Runs after boot.py, except after a soft reset in the raw REPL (mpremote's): starts the firmware,
# or the safe mode that leaves the REPL to the installer. Ctrl-C stops it and gives the REPL back.
import borne.app

borne.app.start()
