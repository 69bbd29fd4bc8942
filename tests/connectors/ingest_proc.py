"""An ingestion process for tests that kill it: ``python -m tests.connectors.ingest_proc
CREDENTIALS IDENTITY SITE HISTORIAN`` ingests the site's reference catalog into the SQLite
historian until it is killed (or its stdin closes), printing "ready" once subscribed."""

from __future__ import annotations

import logging
import sys

from connectors.broker import BrokerAddress
from connectors.historian import Historian
from connectors.ingestion import MqttIngestor
from connectors.topics import Topics


def main(argv: list[str]) -> int:
    credentials, identity, site, historian_path = argv
    logging.basicConfig(level=logging.WARNING)
    address = BrokerAddress.from_credentials(credentials, identity)
    with Historian(historian_path) as historian:
        ingestor = MqttIngestor(
            address, Topics(site), historian, reconnect_min_s=1, reconnect_max_s=1
        )
        ingestor.start(wait_s=20.0)
        print("ready", flush=True)
        sys.stdin.read()  # until the test closes it (or kills this process)
        ingestor.stop()
        print(ingestor.stats(), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
