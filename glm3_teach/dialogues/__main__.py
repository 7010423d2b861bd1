"""``python -m glm3_teach.dialogues [--seed N] [--out DIR]``: write the SFT set of lessons 08 and 09 (``writer.main``)."""

import sys

from glm3_teach.dialogues.writer import main

sys.exit(main())
