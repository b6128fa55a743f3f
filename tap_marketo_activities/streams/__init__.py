"""The SDK's stream classes and what only they use: thin, each reading its run context.

A stream is handed the run's :class:`~tap_marketo_activities.run.RunContext` and reaches
nothing else of the run; ``tap.py`` (above) builds the list of streams.
"""
