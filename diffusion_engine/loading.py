"""One transformers model load at a time in this process.

``from_pretrained`` patches torch's init functions and ``PreTrainedModel.init_weights``
process-wide while it loads (``transformers.initialization.no_init_weights``) and puts the
saved functions back on exit. Two loads in two threads can each save the other's patched
no-ops as "originals": one model then skips tying its weights (SmolLM2 came up with a
randomly initialised ``lm_head``, so every AR token was garbage) and the no-ops may stay
for the rest of the process. The gateway does load in parallel -- the classifier on the
first request while the warm-up thread loads SmolLM2 -- so every model load in the
project holds this lock.
"""

from __future__ import annotations

import threading

#: held around every ``from_pretrained`` of a model (re-entrant: a loader may call another)
MODEL_LOAD_LOCK = threading.RLock()
