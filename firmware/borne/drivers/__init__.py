# Drivers of the chips a node talks to over I2C: environmental sensors and the badge reader.
# A chip that does not answer raises OSError (ENODEV, as ESP32's I2C does); a damaged answer raises
# OSError(EIO): the node counts either as a fault and carries on.
