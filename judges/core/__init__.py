"""The DB-free core of the LLM surrogate judge (issue 5).

Everything here is plain Python over typed values: prompt compilation, the output schema and its
parser, backends, the rate limiter and the concurrent engine. The Django models/tasks layer owns
persistence (runs, judgments, caching, accounting) and calls into this package; keeping the two
apart lets the engine be tested and benchmarked without a database.
"""
