"""The wire: how a call reaches Marketo and how its answer is read.

Auth (the token), transport (the connection: session, adapter, long requests), limits (the
rate, concurrency and daily budgets a call waits on) and envelope (Marketo's ``success:
false`` taxonomy). Imports only the shared modules beside ``settings.py``.
"""
