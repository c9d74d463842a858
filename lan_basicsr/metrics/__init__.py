from .float_metrics import score_images, to_float_image

__all__ = ['score_images', 'to_float_image']
