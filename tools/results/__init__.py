"""Paper-style tables from an output tree (the engine of ``tools/parse_results.py``, whose docstring has the
rules): ``logs`` (one record per run folder), ``cells`` (records into protocol cells), ``tables``
(statistics, published numbers, the tables), ``render`` (terminal, markdown, csv, latex)."""
