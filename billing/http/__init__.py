"""The HTTP shell of every function: authentication, request validation, error responses.

``shell.handle(request, ...)`` is what each OIDC entry point calls, and ``shell.error_response``
is the one producer of the error envelope ``{"error": {"code", "message"}, "run_id"}``; ``auth``
checks OIDC ID tokens (``settings``, ``certs``, ``tokens``, ``tenants``); ``handlers`` and
``payment_handlers`` are what each function does once its request is accepted; ``webhook`` serves
``stripe_webhook``, authenticated by Stripe's signature, through the same envelope.
"""
