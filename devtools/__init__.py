"""Developer tooling: local emulators, the local OIDC issuer, serving, the demo and the data loaders.

Nothing here is deployed; the functions import only ``billing``.
"""
