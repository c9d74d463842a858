from .float_metrics import score_images, to_float_image
from .tensor_metrics import TensorScorer, tensor_scoring_supported

__all__ = ['score_images', 'to_float_image', 'TensorScorer', 'tensor_scoring_supported']
