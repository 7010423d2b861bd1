"""``python -m glm3_teach.stories [--seed N] [--out DIR]``: write the story corpus and its README.

The corpus of lessons 00, 01 and 06; see ``corpus.main``.
"""

from glm3_teach.stories.corpus import main

main()
