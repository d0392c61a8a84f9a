# Runs first at every reset, mpremote's soft resets included: a watchdog started by the firmware
# keeps running through them, so a timer feeds it until the firmware (main.py) takes it over.
import borne.watchdog

borne.watchdog.hold()
