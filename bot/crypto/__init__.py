"""The master key and what it protects: the key ring (keyring), fail-closed start-up and the
stored key check (masterkey), sealing users' API keys (vault), and rotation (rotation).

Users' API keys themselves are bot/services/keys.py; this package only knows the key
that encrypts them (docs/security.md, "Keys at rest").
"""
