"""Admin tooling: call the billing functions by hand, authenticated like Cloud Scheduler.

``python -m admin call FUNCTION_NAME --url URL [options]`` posts a JSON body built from the
options to the function with ``Authorization: Bearer <OIDC ID token>`` and prints the JSON
answer; see :mod:`admin.cli` for the options, the token sources and the exit codes.
"""
