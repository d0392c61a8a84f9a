"""The provisioning layer: board profiles, the device registry, site key files, a board's config.json,
and installing the firmware on a board."""
