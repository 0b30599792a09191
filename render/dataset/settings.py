"""How dataset images are rendered: the engine choices, shared by the renderer and the batch planner (pure)."""

from dataclasses import dataclass

# workbench: shaded Workbench (fast); flat: Workbench with texture colours unlit; cycles: the THA1
# write-up's sun along the view axis plus ambient; toon: MikuMikuDance's own look (its toon ramps,
# sphere maps, ambient and outlines: render.blender.toon), as emission in Cycles at `samples`.
ENGINES = ("workbench", "flat", "cycles", "toon")
# Workbench anti-aliasing samples. 5 looks like 8 at 256² (thin hair strands stay smooth; FXAA
# leaves them jagged) and renders in about two thirds of the time (bench/bench_dataset.py).
ANTIALIAS = ("FXAA", "5", "8", "11", "16", "32")
MAX_SAMPLES = 65_536


@dataclass(frozen=True)
class RenderSettings:
    engine: str = "workbench"  # one of ENGINES
    samples: int = 16  # Cycles and toon only
    antialias: str = "5"  # Workbench only, one of ANTIALIAS

    def __post_init__(self):
        if self.engine not in ENGINES:
            raise ValueError(f"engine {self.engine!r}: expected one of {', '.join(ENGINES)}")
        if self.antialias not in ANTIALIAS:
            raise ValueError(f"anti-aliasing {self.antialias!r}: expected one of {', '.join(ANTIALIAS)}")
        if isinstance(self.samples, bool) or not isinstance(self.samples, int) or not 1 <= self.samples <= MAX_SAMPLES:
            raise ValueError(f"samples {self.samples!r}: expected a whole number from 1 to {MAX_SAMPLES:,}")
