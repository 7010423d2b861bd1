"""glm3_teach: the helper package of the glm3-teach course.

Each module is one concept and is built in the lesson named in its docstring; the lessons
derive every piece in the open, check their version against the one here, and import it
from then on.
"""

from glm3_teach.checks import check, check_value
from glm3_teach.checkpoint import load_pretrained, save_pretrained
from glm3_teach.chatglm3_tokenizer import ChatGLM3Tokenizer
from glm3_teach.config import ChatGLMConfig
from glm3_teach.device import environment_report, pick_device, seed_everything
from glm3_teach.model import ChatGLMForCausalLM, count_parameters

__all__ = [
    "ChatGLM3Tokenizer",
    "ChatGLMConfig",
    "ChatGLMForCausalLM",
    "check",
    "check_value",
    "count_parameters",
    "environment_report",
    "load_pretrained",
    "load_tokenizer",
    "pick_device",
    "save_pretrained",
    "seed_everything",
]
__version__ = "0.1.0"


def load_tokenizer(path=None):
    """The course tokenizer (``data/tokenizer``), or the one saved beside a checkpoint at ``path``.

    Same as ``glm3_teach.tokenizer.load_tokenizer``; imported on call so that the command
    ``python -m glm3_teach.tokenizer`` does not find its module already loaded.
    """
    from glm3_teach.tokenizer import load_tokenizer as load

    return load(path)
