"""The daemon and its Python client: ZeroMQ + msgpack control, shared-memory pixels."""
