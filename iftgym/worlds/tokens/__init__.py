"""Token generation: tokenizers (characters, Hugging Face), tasks (generated or JSONL), decoding, the World and its
Gymnasium environment."""

from iftgym.decoding import generate
from iftgym.worlds.tokens import jsonl  # noqa: F401  (registers the "jsonl" task)
from iftgym.worlds.tokens.env import TokenGenEnv
from iftgym.worlds.tokens.hf_tokenizer import HFTokenizer, load_tokenizer
from iftgym.worlds.tokens.tasks import TASKS, Example, Task, make_task, register_task
from iftgym.worlds.tokens.tokenizer import BOS, EOS, PAD, CharTokenizer, Message, Tokenizer
from iftgym.worlds.tokens.world import TokenWorld

__all__ = ["BOS", "EOS", "PAD", "TASKS", "CharTokenizer", "Example", "HFTokenizer", "Message", "Task", "TokenGenEnv",
           "TokenWorld", "Tokenizer", "generate", "load_tokenizer", "make_task", "register_task"]  # fmt: skip
