"""Mean-field predictions of per-layer gradient gain, with and without batch normalization.

numpy/scipy only: the analysis and report layers import this package and must stay torch-free.

* `meanfield`: plain networks (Poole et al. 2016; Schoenholz et al. 2017): variance map, fixed
  point q*, chi_1, the critical sigma_w2, and depth-L profiles of variance and gradient rms.
* `batchnorm_meanfield`: the gradient explosion rate lambda(B) of BN networks (Yang et al. 2019).
* `batchnorm_backward`: BN's forward/backward pass and its decomposition (Ioffe & Szegedy 2015).
* `initialization`: sigma_w2 of each initialization scheme.
"""

from .activations import ACTIVATIONS, Activation, get_activation
from .batchnorm_backward import (
    BatchNormCache,
    BatchNormGradientParts,
    batchnorm_backward,
    batchnorm_forward,
    decompose_bn_gradient,
)
from .batchnorm_meanfield import (
    bn_fixed_point_covariance,
    bn_gradient_growth,
    bn_gradient_rms_profile,
    bn_linear_gradient_growth,
    bn_relu_gradient_growth,
)
from .gaussian import gaussian_expectation
from .initialization import INITIALIZATIONS, init_sigma_w2
from .meanfield import (
    activation_second_moment,
    chi1,
    critical_sigma_w2,
    derivative_second_moment,
    gradient_rms_profile,
    layer_gradient_gain,
    variance_fixed_point,
    variance_map,
    variance_profile,
)

__all__ = [
    "ACTIVATIONS",
    "Activation",
    "get_activation",
    "gaussian_expectation",
    "activation_second_moment",
    "derivative_second_moment",
    "variance_map",
    "variance_fixed_point",
    "layer_gradient_gain",
    "chi1",
    "critical_sigma_w2",
    "variance_profile",
    "gradient_rms_profile",
    "INITIALIZATIONS",
    "init_sigma_w2",
    "bn_gradient_growth",
    "bn_relu_gradient_growth",
    "bn_linear_gradient_growth",
    "bn_fixed_point_covariance",
    "bn_gradient_rms_profile",
    "BatchNormCache",
    "BatchNormGradientParts",
    "batchnorm_forward",
    "batchnorm_backward",
    "decompose_bn_gradient",
]
