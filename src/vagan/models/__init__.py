"""vagan.models: the VAGAN networks (attentive block, generator, discriminator), the baselines and VGG19 features."""

from vagan.models.attentive_block import AttentiveBlock
from vagan.models.baselines import REDCNN, WGANCritic, WGANVGGGenerator
from vagan.models.convlstm import ConvLSTMCell
from vagan.models.discriminator import Discriminator
from vagan.models.generator import REDGenerator
from vagan.models.init import init_parameters
from vagan.models.outputs import DiscriminatorOutput, GeneratorOutput
from vagan.models.registry import (
    DISCRIMINATOR_KINDS,
    GENERATOR_KINDS,
    build_discriminator,
    build_generator,
)
from vagan.models.vagan_generator import AttentiveGenerator
from vagan.models.vgg import VGG19Features, load_vgg19_weights

__all__ = [
    "DISCRIMINATOR_KINDS",
    "GENERATOR_KINDS",
    "REDCNN",
    "AttentiveBlock",
    "AttentiveGenerator",
    "ConvLSTMCell",
    "Discriminator",
    "DiscriminatorOutput",
    "GeneratorOutput",
    "REDGenerator",
    "VGG19Features",
    "WGANCritic",
    "WGANVGGGenerator",
    "build_discriminator",
    "build_generator",
    "init_parameters",
    "load_vgg19_weights",
]
