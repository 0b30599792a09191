"""How dataset images are rendered: the engine choices, shared by the renderer and the batch planner (pure)."""

from dataclasses import dataclass

# workbench: shaded Workbench (fast); flat: Workbench with texture colours unlit (toon-like,
# closest to MMD and drawings); cycles: the THA1 write-up's sun along the view axis plus ambient.
ENGINES = ("workbench", "flat", "cycles")


@dataclass
class RenderSettings:
    engine: str = "workbench"  # one of ENGINES
    samples: int = 16  # Cycles only

    def __post_init__(self):
        if self.engine not in ENGINES:
            raise ValueError(f"engine {self.engine!r}: expected one of {', '.join(ENGINES)}")
