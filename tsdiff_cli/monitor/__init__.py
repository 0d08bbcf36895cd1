"""``tsdiff monitor``: watch a run directory live.

``tail`` follows metrics.jsonl (plain file reading, no UI), ``series`` holds the numbers in
compact arrays, ``model`` turns a run directory into state, progress and scores, ``summary``
prints it once with rich, and ``app`` is the Textual dashboard. Only ``app`` imports Textual.
"""
