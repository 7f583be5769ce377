"""The HTTP shell of every function: authentication, request validation, error responses.

``shell.handle(request, ...)`` is what each entry point calls; ``auth`` checks OIDC ID tokens;
``handlers`` and ``payment_handlers`` are what each function does once its request is accepted.
"""
