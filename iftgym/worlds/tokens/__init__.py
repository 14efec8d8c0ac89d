"""Token generation: the character tokenizer, tasks (generated or JSONL), decoding, the World and its Gymnasium
environment."""

from iftgym.worlds.tokens import jsonl  # noqa: F401  (registers the "jsonl" task)
from iftgym.worlds.tokens.env import TokenGenEnv
from iftgym.worlds.tokens.generation import generate
from iftgym.worlds.tokens.tasks import TASKS, Example, Task, make_task, register_task
from iftgym.worlds.tokens.tokenizer import BOS, EOS, PAD, CharTokenizer
from iftgym.worlds.tokens.world import TokenWorld

__all__ = ["BOS", "EOS", "PAD", "TASKS", "CharTokenizer", "Example", "Task", "TokenGenEnv", "TokenWorld", "generate",
           "make_task", "register_task"]  # fmt: skip
