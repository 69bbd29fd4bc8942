"""TwinLoop connectors: the site's BMS over MQTT and the historian.

- :mod:`connectors.topics` — the MQTT topic layout of a site (``Topics``).
- :mod:`connectors.payloads` — JSON payloads and their strict decoders (reject reasons).
- :mod:`connectors.broker` — ``BrokerAddress`` and ``MosquittoBroker`` (a secured Mosquitto).
- :mod:`connectors.tls` — a generated test CA for the broker's TLS listener.
- :mod:`connectors.mqtt_client` — paho-mqtt v2 / MQTT 5 client setup.
- :mod:`connectors.bms_emulator` — ``BmsEmulator``: the plant served as a BMS gateway.
- :mod:`connectors.ingestion` — ``MqttIngestor``: MQTT → validation → historian.
- :mod:`connectors.setpoint_writer` — ``SetpointWriter``: checked, audited setpoint writes.
- :mod:`connectors.historian` — ``Historian`` (SQLite WAL) and the ``HistorianStore`` protocol.
"""
