"""Moved to ``components.common.model_dir``; this name stays until the model server's
imports switch to it (the train step itself no longer uses it)."""

from components.common.model_dir import (  # noqa: F401
    META_FILE,
    MODEL_FORMAT,
    MODEL_VERSION,
    WEIGHTS_FILE,
    Architecture,
    LoadedModel,
    build,
    check_output,
    load,
    save,
    write_model,
)
