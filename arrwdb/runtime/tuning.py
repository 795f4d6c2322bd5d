"""Every CPU and GPU tuning knob of arrwdb, in one place: thread counts and the rules that choose them,
the OpenMP runtime, thread priority, the GIL and the GC, GPU memory headroom, warm-up shapes.

The modules that apply a knob (``device``, ``openmp``, ``thread_priority``, ``gc_tuning``,
``index.faiss_ops``, ``index.faiss_search``, ``embed.minilm``, ``engine.warmup``) import it from here;
the settings an operator may change are in ``arrwdb.config`` (docs/CONFIGURATION.md), these are the
measured defaults behind them.  Nothing here imports torch or FAISS.
"""

from __future__ import annotations

from arrwdb.runtime.cores import usable_cores

# -- Processes that run an engine: the GIL and the cyclic GC (``gc_tuning.tune_process``).

# How long a thread that wants the GIL waits before it asks the holder to drop it (Python's default:
# 5 ms).  The device worker needs the GIL for moments between GIL-free FAISS and torch calls, and the
# event loop and the finishing thread hold it in bursts: at 5 ms each such moment could cost the
# device worker several milliseconds; at 0.5 ms it waits a tenth of that (the effect shows in the
# server legs of `arrwdb bench ann`, docs/PERFORMANCE.md, "ANN indexes").
GIL_SWITCH_INTERVAL_S = 0.0005

# The cyclic GC's thresholds (Python's: 700, 10, 10).  A young collection runs once 700 more container
# objects live than at the last one, and a request in flight holds dozens (its coroutines, futures,
# contexts, timers): under load the loop's population swings by thousands as batches complete and
# refill, so with Python's thresholds the GC runs many young and several middle collections a second,
# on the event loop, while the device's scans keep the memory bus busy: a middle or full collection
# takes milliseconds, and under overload the slow stretches of 429s start at them.  At 20,000 one
# runs every few seconds; memory stays bounded (a young collection still follows every 20,000 objects
# of uncollected garbage).
GC_THRESHOLDS = (20_000, 20, 20)


# -- The OpenMP runtime (``openmp.configure_for_serving``): its workers sleep as soon as a region ends.

# GOMP_SPINCOUNT for the server's processes: 0 = a worker thread sleeps as soon as its region ends
# instead of spinning on a core the event loop needs (the measurement in ``arrwdb.runtime.openmp``).
SERVER_SPIN_COUNT = "0"


# -- Thread priority (``thread_priority``): how far ``low`` lowers arrwdb's threads.

# Nice steps below the event loop for arrwdb's threads under ARRWDB_WORKER_PRIORITY=low.
LOW_NICE_STEPS = 10


# -- GPU memory (``device.GpuBudget``).

# Kept free beside everything arrwdb places on a GPU: the model's activations at the largest batch,
# the search kernel's score blocks (<= 512 MiB, see FlatIndex), the re-rank gathers (<= 256 MiB), FAISS
# temporary memory and the CUDA context.  Plus a share of the card, for what other processes hold.
HEADROOM_BYTES = 2 << 30
HEADROOM_FRACTION = 0.05


# -- The device worker's intra-op threads (``device.WorkerThreads``).

# HTTP requests in flight from which the event loop is busy enough to keep a core (WorkerThreads).
BUSY_LOOP_REQUESTS = 8
# Queries or texts from which a CPU batch uses every core (WorkerThreads.fit_search / fit_embed).
LARGE_BATCH = 8
LARGE_EMBED_BATCH_BUSY = 32


# -- Searches the event loop runs itself (``engine.search_batch.is_short``, ``Scheduler._run_here``).

# A search batch of at most this many queries, while nothing else waits for the device worker, runs
# on the event loop's thread: for a lone query the two thread hand-offs cost more than an HNSW search.
SHORT_SEARCH_QUERIES = 4
# ... when the rows it scans exactly (an exact library's, the rows an ANN graph does not hold yet, or a
# filtered library's) times the dimension are at most this: 16 MB of float32 rows, a scan short enough
# to hold the loop for (a larger exact scan waits its turn on the device worker).
SHORT_SEARCH_EXACT_VALUES = 4_000_000


def worker_threads(configured: int | None, device_type: str) -> int:
    """Intra-op threads of the device worker for small work (``WorkerThreads``): ``ARRWDB_TORCH_THREADS``
    when set; on a GPU host every core; on a CPU one core fewer, left to the event loop (a lone text's
    forward pass is also faster on one thread than on two)."""
    if configured:
        return configured
    cores = usable_cores()
    return cores if device_type == "cuda" else max(1, cores - 1)


# -- FAISS (``index.faiss_search``, ``index.faiss_ops``): threads of one search call, vectors per add call of a build.


def search_threads(queries: int) -> int:
    """FAISS threads for one search call: one for a single query (faster than two), every core for a
    batch.  Every core is safe beside the event loop only because the server's OpenMP runtime sleeps
    after a parallel region instead of spinning on the loop's core (``arrwdb.runtime.openmp``)."""
    return 1 if queries == 1 else usable_cores()


# Vectors per add call in a build: between calls the builder may change its thread count (every core
# while the server is idle, ARRWDB_BUILD_THREADS while it serves), so a long build follows the load.
ADD_CHUNK = 4096


# -- The embedding model on a CPU (``embed.minilm``): texts per forward pass, and lanes.

# Texts per forward pass.  Sub-batches of similar length waste little compute on padding, and a
# bounded size keeps a text's vector (nearly) independent of what else is in its batch.
DEFAULT_FORWARD_BATCH = 64
# On a CPU a batch of at least four texts is embedded in lanes (``cpu_lanes``: up to one a core, at
# least two texts a lane): one single-threaded forward pass a lane, all at once, each over every
# lanes-th text by length (`arrwdb bench embed` measures the packaged model by batch size;
# docs/PERFORMANCE.md, "Embedding").  A small forward pass is mostly a chain of short operators: a
# second intra-op thread must be woken for each and waited for, while a second lane runs its own chain
# and meets the first only at the end.
MIN_TEXTS_PER_LANE = 2
# A batch of at most this many texts, prepared while the lanes still run an earlier batch, is embedded
# whole by the first lane that frees (the worker hands lanes off: ``MiniLMEmbedder.start_in_lanes``):
# each forward pass reads every weight once, so one pass of all its texts costs less than one a lane.
# Measured with interleaved runs on the 2-vCPU Xeon VM, 64 closed-loop clients, against lanes that the
# worker waits for: single-document inserts (batches of ~20) +7% with this rule (+4% without it); text
# queries (batches of 64) unchanged at 32, -7% with every batch whole (a 64-text pass on one lane
# while the other idles).
ONE_LANE_MAX_TEXTS = 32


def cpu_lanes(texts: int, cores: int) -> int:
    """Lanes for a CPU forward pass of ``texts`` texts on ``cores`` cores (1: no lanes)."""
    return max(1, min(cores, texts // MIN_TEXTS_PER_LANE))


# -- GPU warm-up (``engine.warmup``): the batch sizes warmed, each capped at ``ARRWDB_MAX_BATCH_SIZE``.

WARMUP_BATCH_SIZES = (1, 8, 64, 256)
