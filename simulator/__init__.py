"""The simulator: virtual ESP32 boards running the real firmware, chip models, the radio medium, a virtual site."""
