"""Generator backends behind one interface (`Generator.generate(clip) -> GeneratorOutput`)."""
from egox_model.generator.base import EgoPrior, Generator, GeneratorOutput, StepCallback

__all__ = ["EgoPrior", "Generator", "GeneratorOutput", "StepCallback"]
