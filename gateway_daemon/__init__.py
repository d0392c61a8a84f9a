"""The gateway daemon: radio frames in, verified and deduplicated events out to MQTT.

sources/ (bridge board on serial, Semtech UDP, simulated medium)
  → pipeline (registry, MIC, counter, dedup, decode) → outbox (SQLite) → MQTT
"""
