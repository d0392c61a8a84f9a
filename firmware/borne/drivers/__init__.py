# Drivers of what a node reads: the badge reader (PN532 on I2C, MFRC522 on SPI), environmental
# sensors on I2C, the battery's voltage on an ADC pin, an energy meter's pulses on a GPIO.
# A chip that does not answer raises OSError (ENODEV, as ESP32's I2C does); a damaged answer raises
# OSError(EIO): the node counts either as a fault and carries on.
