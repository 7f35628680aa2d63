"""Reading runs back: the Polars reader, the query language, the report, and
reproduce/diff."""
