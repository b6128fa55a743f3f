"""The ``leads`` and ``merged_leads`` streams: lead records kept current from the change feed."""
