//! gunsync: mirrors OIP records from GUN relays into Elasticsearch through a durable job ledger.
