"""``python -m bot.cli``: the ``mashangyi`` command."""

import sys

from bot.cli import main

sys.exit(main())
