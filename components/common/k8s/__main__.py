"""``python -m components.common.k8s``: the dry-run CLI (``components.common.k8s.cli``)."""

import sys

from ..errors import cli_entry
from .cli import main

sys.exit(cli_entry(main)())
