"""glm3_teach: the helper package of the glm3-teach course.

Each module is one concept and is built in the lesson named in its docstring; the lessons
derive every piece in the open, check their version against the one here, and import it
from then on.
"""

from glm3_teach.checks import check, check_value
from glm3_teach.device import environment_report, pick_device, seed_everything

__all__ = ["check", "check_value", "environment_report", "pick_device", "seed_everything"]
__version__ = "0.1.0"
