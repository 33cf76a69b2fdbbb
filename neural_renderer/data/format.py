"""The on-disk dataset format (version 1). Defined once, in bridge/dataset_format.py (the daemon writes
recordings in it and the bridge imports nothing of neural_renderer); this module is its name here."""
from bridge.dataset_format import (CHANNEL_DTYPES, CONSTANTS_DIM, FORMAT_NAME, FORMAT_VERSION, FRAME_ARRAYS,  # noqa: F401
                                   INDEX_FILE, REFERENCE_DTYPE, SPLITS, STYLE_NAME, DatasetError, EvalSeedError,
                                   SequenceInfo, array_specs, check_style_name, commit, flatten_constants,
                                   make_index, parse_sequences, read_index, reference_array, shard_dir_name,
                                   unflatten_constants)
