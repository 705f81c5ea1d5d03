"""A tool-using task for spear-rl: look up a price, multiply, answer."""

import random

from spear_rl import StepResult, ToolEnv

PRICES = {"apple": 3, "pear": 5, "melon": 9}


def price(item: str) -> int:
    """The price of one item, in cents.

    Args:
        item: the item's name: apple, pear or melon
    """
    return PRICES[item]  # an unknown item raises; the model reads the error


def multiply(a: int, b: int) -> int:
    """Multiply two whole numbers.

    Args:
        a: the first factor
        b: the second factor
    """
    return a * b


class ShopEnv(ToolEnv):
    instructions = (
        "You are a shop assistant. Use the tools, then give the total in cents "
        "as <answer>...</answer>."
    )
    tools = [price, multiply]

    def _reset(self, seed: int) -> str:
        rng = random.Random(seed)
        self.item, self.count = rng.choice(sorted(PRICES)), rng.randint(2, 9)
        self.task = f"What do {self.count} {self.item}s cost?"
        return "Nothing looked up yet."

    def final_answer(self, answer: str) -> StepResult:
        self.won = answer == str(PRICES[self.item] * self.count)
        return StepResult("Correct." if self.won else "Wrong.", float(self.won), True)

    def expert_action(self) -> str:
        if self.tool_calls == 0:
            return self.tool_call_text("price", item=self.item)
        if self.tool_calls == 1:
            return self.tool_call_text("multiply", a=PRICES[self.item], b=self.count)
        return self.answer_text(str(PRICES[self.item] * self.count))
