"""Pin the thread counts of native numeric libraries, so labels do not depend on the environment.

Why: a release must be the same whatever the thread environment (`OMP_NUM_THREADS=1` is what a Dask
worker process gets). OpenBLAS splits a matrix product over its threads, and a different split sums
in another order: the floats differ in their last bits, and a greedy decoder that sees other
floats can pick another token. Measured (faster-whisper 1.2.1, numpy's scipy-openblas 0.3.31, tiny.en):
the 9 field recordings of the demo got other `avg_logprob`, `no_speech_prob` and word probabilities
with ``OPENBLAS_NUM_THREADS=1`` (or ``OMP_NUM_THREADS=1``, which OpenBLAS also reads) than with the
default 2 threads; the cause is the mel spectrogram of faster-whisper's feature extractor, a numpy
matrix product. CTranslate2 itself gave identical output with ``cpu_threads`` 1 and 2 and is pinned
by ``labelers.whisper.cpu_threads`` anyway; faster-whisper's Silero VAD (ONNX Runtime) runs with 1
intra-op and 1 inter-op thread whatever the environment.

So every labeler calls `pin_native_threads()` before it computes: every loaded BLAS (numpy's and
scipy's OpenBLAS, MKL if present) is limited to `BLAS_THREADS` and torch to `TORCH_THREADS`. The
limits are process-wide and never restored: shards run concurrently in threads of one process, and
a context manager restoring the old limit when one shard ends would unpin a shard still running.
One thread costs little here: the labelers' heavy work is in CTranslate2 and ONNX Runtime, whose
threads are set explicitly; the BLAS products left (mel filters, scikit-learn's logistic
regression) are small.
"""

from __future__ import annotations

import sys
import threading

BLAS_THREADS = 1
TORCH_THREADS = 1

_LOCK = threading.Lock()


def pin_native_threads() -> None:
    """Limit every loaded BLAS to `BLAS_THREADS` and torch (when imported) to `TORCH_THREADS` threads.

    Call it at the start of each labelling step (not once per process): a library loaded later,
    such as torch's own BLAS, is only pinned by a call made after it was loaded. Cheap (~10 ms).
    """
    from threadpoolctl import threadpool_limits

    with _LOCK:
        threadpool_limits(limits=BLAS_THREADS, user_api="blas")
        torch = sys.modules.get("torch")
        if torch is not None and torch.get_num_threads() != TORCH_THREADS:
            torch.set_num_threads(TORCH_THREADS)
